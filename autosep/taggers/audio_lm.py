"""An instruction-following audio-language model as a tagger (default Qwen2-Audio-7B-Instruct).

The model hears windows of at most 30 s (16 kHz) and is asked for the distinct sound sources as a JSON list of
short descriptions. Its text is parsed defensively (``parse_sources``): whatever comes back becomes a list of
clean short phrases, or an empty list plus a warning, never an exception. Each phrase becomes an open-set
column (``open:<phrase>``) scored 1.0 in the windows that mention it; the planner uses the phrase as the
prompt and maps it to the nearest AudioSet class, where one matches, for its hierarchy rules.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..devices import resolve_device, resolve_dtype
from ..model_files import KnownModel
from .base import Tagger, TagResult
from .hub import from_pretrained, resolve_model_id
from .sources import OPEN_SET_PREFIX
from .prompts import clean_phrase

if TYPE_CHECKING:  # torch is imported when the model is built, so listing the taggers does not pay for it
    import torch

log = logging.getLogger(__name__)

AUDIO_LM_MODEL_ID = "Qwen/Qwen2-Audio-7B-Instruct"
INSTRUCTION = (
    "List the distinct sound sources you can hear in this recording (instruments, voices, animals, machines, "
    "environmental sounds). Answer with only a JSON list of short descriptions of two to four words each, "
    'for example ["man speaking", "acoustic guitar", "dog barking"]. Answer [] if you hear nothing.'
)
MAX_SOURCES_PER_WINDOW = 10
MAX_WORDS = 6
_NON_ANSWERS = frozenset({
    "none", "nothing", "n/a", "na", "unknown", "silence", "no sound", "no sounds", "no sound sources",
    "sound", "sounds", "audio", "noise", "i don't know", "",
})


def parse_sources(text: object) -> tuple[list[str], str | None]:
    """Phrases from a model's answer, and a warning when the answer could not be read as a list.

    Accepts a JSON list anywhere in the text (strings, or objects with a ``source``/``name``/``label``/
    ``description`` field), else bullet or numbered lines; each phrase is cleaned (no quotes, bullets or
    trailing punctuation, lower case, at most six words); non-answers ("none", "silence") are dropped.
    """
    if not isinstance(text, str):
        return [], f"the audio-language model returned no text ({type(text).__name__})"
    body = re.sub(r"```(?:json)?", " ", text)
    items = _json_items(body)
    if items is None:
        items = _listed_lines(body)
    if items is None:
        snippet = "".join(c if c.isprintable() else "?" for c in " ".join(text.split()))[:80]
        return [], f"could not read a list of sound sources from the audio-language model's answer: {snippet!r}"
    phrases = []
    for item in items:
        phrase = clean_phrase(item, max_words=MAX_WORDS)
        if phrase in _NON_ANSWERS or not re.search(r"[a-z]", phrase) or len(phrase) > 60:
            continue
        phrases.append(phrase)
    return list(dict.fromkeys(phrases))[:MAX_SOURCES_PER_WINDOW], None


def _json_items(body: str, max_tries: int = 400) -> list[str] | None:
    """The first JSON list in ``body`` (tries each "[" with each later "]", longest first; bounded work)."""
    tries = 0
    for match in re.finditer(r"\[", body):
        end = body.rfind("]")
        while end > match.start() and tries < max_tries:
            tries += 1
            try:
                value = json.loads(body[match.start():end + 1])
            except (json.JSONDecodeError, RecursionError):
                end = body.rfind("]", match.start(), end)
                continue
            if isinstance(value, list):
                return [s for s in (_item_text(v) for v in value) if s]
            break
    return None


def _item_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for key in ("source", "name", "label", "description", "sound"):
            if isinstance(value.get(key), str):
                return value[key]
    return ""


def _listed_lines(body: str) -> list[str] | None:
    lines = [line for line in body.splitlines() if re.match(r"^\s*(?:[-*\u2022]|\d+[.)])\s+\S", line)]
    return lines or None


class AudioLMTagger(Tagger):
    name = "audio-lm"
    aliases = ("qwen2-audio",)
    weights = KnownModel(
        alias="audio-lm", role="tagger", source=AUDIO_LM_MODEL_ID, size="16.8 GB", licence="Apache-2.0",
        description="Qwen2-Audio instruction model asked for the sound sources (open set)",
    )
    sample_rate = 16000
    window_seconds = 30.0  # Qwen2-Audio's Whisper encoder hears at most 30 s
    hop_seconds = 30.0  # every window costs a generation: no overlap
    default_threshold = 0.5  # scores are 1.0 (mentioned) or 0.0
    max_new_tokens = 96

    def __init__(self, model: str | Path | None = None, device: str | torch.device = "auto",
                 dtype: str | None = None):
        import transformers
        from transformers import AutoProcessor

        auto_model = getattr(transformers, "AutoModelForMultimodalLM", None) or transformers.AutoModelForSeq2SeqLM
        self.model_id = resolve_model_id(model, AUDIO_LM_MODEL_ID)
        self.device = resolve_device(device)
        self.processor = from_pretrained(AutoProcessor.from_pretrained, self.model_id, "audio-lm")
        self.model = from_pretrained(auto_model.from_pretrained, self.model_id, "audio-lm",
                                     dtype=resolve_dtype(dtype, self.device))
        self.model.eval().to(self.device)
        extractor = getattr(self.processor, "feature_extractor", None)
        self.sample_rate = int(getattr(extractor, "sampling_rate", 16000))
        self.window_seconds = min(30.0, float(getattr(extractor, "chunk_length", 30) or 30))
        self.hop_seconds = self.window_seconds
        self.labels = []

    def tag(self, wave: np.ndarray, sample_rate: int) -> TagResult:
        """Ask the model per window; columns are the phrases it names, scored 1.0 where named."""
        pieces, times = self.windows(wave, sample_rate)
        per_window: list[list[str]] = []
        notes: list[str] = []
        for piece in pieces:
            phrases, warning = parse_sources(self.ask(piece))
            if warning:
                log.warning("%s", warning)
                notes.append(warning)
            per_window.append(phrases)
        phrases = list(dict.fromkeys(p for window_phrases in per_window for p in window_phrases))
        probs = np.zeros((len(pieces), len(phrases)), dtype=np.float32)
        column = {p: j for j, p in enumerate(phrases)}
        for i, window_phrases in enumerate(per_window):
            for phrase in window_phrases:
                probs[i, column[phrase]] = 1.0
        return TagResult(probs, [OPEN_SET_PREFIX + p for p in phrases], times, self.name, self.model_id,
                         self.default_threshold, notes, window_seconds=self.grid.window_seconds)

    def score_windows(self, windows: list[np.ndarray]) -> np.ndarray:  # not used: tag() is open-set
        raise NotImplementedError("AudioLMTagger scores through tag()")

    def ask(self, audio: np.ndarray) -> str:
        """The model's raw answer to ``INSTRUCTION`` for one window."""
        import torch

        with torch.inference_mode():
            return self._generate(audio)

    def _generate(self, audio: np.ndarray) -> str:
        conversation = [{"role": "user", "content": [
            {"type": "audio", "audio_url": "window.wav"}, {"type": "text", "text": INSTRUCTION},
        ]}]
        prompt = self.processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        try:
            inputs = self.processor(text=prompt, audio=[audio], sampling_rate=self.sample_rate, return_tensors="pt")
        except TypeError:  # transformers < 4.50 calls the argument "audios"
            inputs = self.processor(text=prompt, audios=[audio], sampling_rate=self.sample_rate,
                                    return_tensors="pt")
        inputs = inputs.to(self.device)
        if "input_features" in inputs:
            inputs["input_features"] = inputs["input_features"].to(self.model.dtype)
        output = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        new_tokens = output[:, inputs["input_ids"].shape[1]:]
        return self.processor.batch_decode(new_tokens, skip_special_tokens=True)[0]
