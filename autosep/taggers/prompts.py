"""Text for AudioSet classes: the prompt the separator gets for a class, and the class a free-form phrase names.

Prompt rule, in order:
1. a user override (``--prompts FILE``: lines ``Display name = prompt`` or ``/m/mid = prompt``; ``#`` comments);
2. the built-in table below, for classes whose display name is not how people describe the sound
   ("Bark" -> "dog barking", "Male speech, man speaking" -> "man speaking");
3. otherwise the display name itself, lower-cased, taking the part after a comma when that part is the
   verb phrase ("Crying, sobbing" -> "crying", "Whistling" -> "whistling"; "Car alarm" -> "car alarm"),
   with parenthesised qualifiers dropped ("Keyboard (musical)" -> "keyboard").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from ..errors import AutosepError

# Display name -> prompt, where the display name reads badly as a text-to-audio prompt.
DEFAULT_PROMPTS: dict[str, str] = {
    "Speech": "speech",
    "Male speech, man speaking": "man speaking",
    "Female speech, woman speaking": "woman speaking",
    "Child speech, kid speaking": "child speaking",
    "Conversation": "people talking",
    "Narration, monologue": "a person narrating",
    "Singing": "singing",
    "Male singing": "man singing",
    "Female singing": "woman singing",
    "Child singing": "child singing",
    "Choir": "choir singing",
    "Laughter": "people laughing",
    "Baby laughter": "baby laughing",
    "Baby cry, infant cry": "baby crying",
    "Crying, sobbing": "person crying",
    "Whistling": "person whistling",
    "Applause": "audience applause",
    "Clapping": "hands clapping",
    "Cheering": "crowd cheering",
    "Crowd": "crowd noise",
    "Footsteps": "footsteps",
    "Dog": "dog",
    "Bark": "dog barking",
    "Howl": "dog howling",
    "Growling": "dog growling",
    "Whimper (dog)": "dog whimpering",
    "Cat": "cat",
    "Meow": "cat meowing",
    "Purr": "cat purring",
    "Bird": "birds",
    "Bird vocalization, bird call, bird song": "birds singing",
    "Chirp, tweet": "birds chirping",
    "Crow": "crow cawing",
    "Rooster": "rooster crowing",
    "Horse": "horse neighing",
    "Cattle, bovinae": "cow mooing",
    "Moo": "cow mooing",
    "Insect": "insects buzzing",
    "Cricket": "crickets chirping",
    "Frog": "frog croaking",
    "Rain": "rain falling",
    "Raindrop": "raindrops",
    "Thunder": "thunder rumbling",
    "Wind": "wind blowing",
    "Stream": "stream of water flowing",
    "Ocean": "ocean waves",
    "Waves, surf": "ocean waves crashing",
    "Water": "running water",
    "Fire": "fire crackling",
    "Car": "car engine",
    "Vehicle horn, car horn, honking": "car horn honking",
    "Siren": "siren wailing",
    "Train": "train passing",
    "Aircraft": "airplane flying overhead",
    "Helicopter": "helicopter flying",
    "Engine": "engine running",
    "Telephone bell ringing": "telephone ringing",
    "Ringtone": "phone ringtone",
    "Alarm clock": "alarm clock ringing",
    "Door": "door opening and closing",
    "Knock": "knocking on a door",
    "Typing": "typing on a keyboard",
    "Computer keyboard": "typing on a computer keyboard",
    "Music": "music",
    "Guitar": "guitar",
    "Acoustic guitar": "acoustic guitar",
    "Electric guitar": "electric guitar",
    "Bass guitar": "bass guitar",
    "Piano": "piano",
    "Keyboard (musical)": "keyboard",
    "Drum kit": "drum kit",
    "Drum": "drums",
    "Violin, fiddle": "violin",
    "Cello": "cello",
    "Flute": "flute",
    "Saxophone": "saxophone",
    "Trumpet": "trumpet",
    "Bowed string instrument": "string instruments",
    "Orchestra": "orchestra",
    "Bass (instrument role)": "bass",
    "Synthesizer": "synthesizer",
}

_STOPWORDS = frozenset("a an the of some sound sounds noise someone somebody in on and with".split())


class PromptFileError(AutosepError):
    """The user's prompt override file could not be read."""


def load_prompt_overrides(path: str | Path) -> dict[str, str]:
    """Read ``Display name = prompt`` lines (``#`` starts a comment). Keys may also be mids."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PromptFileError(f"{path}: cannot read the prompt file ({exc}); pass a UTF-8 text file") from None
    overrides: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, prompt = line.rpartition("=")
        if not sep or not name.strip() or not prompt.strip():
            raise PromptFileError(f"{path}, line {number}: expected 'Display name = prompt', got {raw.strip()!r}")
        overrides[name.strip().casefold()] = prompt.strip()
    return overrides


def prompt_for(name: str, mid: str | None = None, overrides: Mapping[str, str] | None = None) -> str:
    """The separator prompt for the AudioSet class ``name`` (see the module docstring for the rule)."""
    if overrides:
        for key in (mid, name):
            if key and key.casefold() in overrides:
                return overrides[key.casefold()]
    if name in DEFAULT_PROMPTS:
        return DEFAULT_PROMPTS[name]
    cleaned = re.sub(r"\s*\([^)]*\)", "", name).strip()
    parts = [p.strip() for p in cleaned.split(",") if p.strip()]
    if not parts:
        return name.lower()
    verb_parts = [p for p in parts[1:] if any(w.endswith("ing") for w in p.split())]
    return (verb_parts[0] if verb_parts else parts[0]).lower()


def clean_phrase(text: str, max_words: int = 8) -> str:
    """A free-form source description as a short prompt: no quotes, bullets, numbering or trailing dots."""
    text = re.sub(r"^\s*(?:[-*\u2022]+|\d+[.)])\s*", "", str(text))
    text = text.strip().strip("\"'`").strip()
    text = re.sub(r"\s+", " ", text).rstrip(".;:,!").strip()
    words = text.split(" ")
    return " ".join(words[:max_words]).lower() if text else ""


def _stem(word: str) -> str:
    for suffix in ("ing", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            word = word[: -len(suffix)]
            if suffix == "ing" and len(word) > 2 and word[-1] == word[-2]:
                word = word[:-1]  # strumming -> strum
            break
    return word


def _tokens(text: str) -> frozenset[str]:
    words = re.findall(r"[a-z0-9]+", text.casefold())
    return frozenset(_stem(w) for w in words if w not in _STOPWORDS)


def match_audioset_class(text: str, ontology) -> "object | None":
    """The AudioSet node a free-form phrase names, or ``None`` when none matches.

    Exact display names, any comma-separated part of one ("man speaking") and the built-in prompts
    ("dog barking") match directly. Otherwise the class whose name words (stemmed, stop words dropped) all
    occur in the phrase wins, preferring more matched words, then the deeper (more specific) class:
    "acoustic guitar strumming" -> Acoustic guitar; "two dogs barking" -> Bark.
    """
    phrase = clean_phrase(text, max_words=32)
    if not phrase:
        return None
    node = ontology.lookup(phrase)
    if node is not None:
        return node
    index = _phrase_index(ontology)
    if phrase in index.exact:
        return ontology.nodes[index.exact[phrase]]
    words = _tokens(phrase)
    best = None
    best_key = None
    for mid, token_sets in index.tokens.items():
        for tokens in token_sets:
            if tokens and tokens <= words:
                node = ontology.nodes[mid]
                key = (len(tokens), node.depth, -ontology.order(mid))
                if best_key is None or key > best_key:
                    best, best_key = node, key
    return best


class _PhraseIndex:
    def __init__(self, ontology):
        self.exact: dict[str, str] = {}
        self.tokens: dict[str, list[frozenset[str]]] = {}
        for mid, node in ontology.nodes.items():
            cleaned = re.sub(r"\s*\([^)]*\)", "", node.name)
            parts = [p.strip().casefold() for p in cleaned.split(",") if p.strip()]
            for part in parts:
                self.exact.setdefault(part, mid)
            self.tokens[mid] = [_tokens(part) for part in parts]
        for name, prompt in DEFAULT_PROMPTS.items():
            node = ontology.lookup(name)
            if node is not None:
                self.exact.setdefault(prompt.casefold(), node.id)


def _phrase_index(ontology) -> _PhraseIndex:
    index = getattr(ontology, "_phrase_index", None)
    if index is None:
        index = ontology._phrase_index = _PhraseIndex(ontology)  # built once per loaded ontology
    return index
