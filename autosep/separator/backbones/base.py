"""The one contract every diffusion backbone family fulfils, and the registry that finds a family.

A family (AudioLDM2, AudioLDM, Tango, Stable Audio Open, Stable Audio 3...) is one concrete subclass of
:class:`Backbone`; defining it registers it (``__init_subclass__``). From then on the model list (``autosep
models``), the aliases users type, the ``--model`` help, the loader's choice for a folder or hub id, and the
separator's choice for a loaded pipeline all come from the registry, and :class:`~autosep.separator.ZeroSep`
only calls the methods below: it never asks which family it has.

Class side (answered without torch, so listing models and ``--help`` stay light): ``name``, ``models`` (one
:class:`ModelCard` per published checkpoint), ``samplers``, and how the family recognises and loads its files
(:meth:`Backbone.claims_folder`, :meth:`~Backbone.claims_repo`, :meth:`~Backbone.download`,
:meth:`~Backbone.is_cached`, :meth:`~Backbone.load`, :meth:`~Backbone.matches`).

Instance side (a loaded pipeline): what it works at (``sample_rate``, ``channels``, ``default_window``,
``max_steps``), its networks (``denoiser``, ``text_modules``, ``float32_modules``), text encoding
(:meth:`~Backbone.encode`, :meth:`~Backbone.stack`), the model call (:meth:`~Backbone.predict`), audio to latents
and back (:meth:`~Backbone.scale`, :meth:`~Backbone.padded_length`, :meth:`~Backbone.encode_audio`,
:meth:`~Backbone.decode_audio`) and the two halves of ZeroSep (:meth:`~Backbone.invert`,
:meth:`~Backbone.denoise`).
"""

from __future__ import annotations

import inspect
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, ContextManager

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..guidance import GuidedNoise

Conditioning = dict[str, "torch.Tensor"]  # one prompt's encoded text, batch size 1


@dataclass(frozen=True)
class ModelCard:
    """A published checkpoint of a family, as ``autosep models`` lists it and users name it."""

    alias: str  # the short name users type ("audioldm2")
    repo: str  # its Hugging Face repo id
    size: str  # download size, for humans ("~4.5 GB")
    description: str
    licence: str
    default: bool = False  # the separator used when no --model is given (exactly one card in the registry)


@dataclass
class SamplingRun:
    """What one inversion + denoising pass needs besides the latents: the settings and the separator's services."""

    inversion: str  # "ddpm" (edit-friendly) or "ddim" (deterministic)
    steps: int
    seed: int
    noise: "GuidedNoise"  # (latents, t, prompts) -> the guided model output (float32), counting its evaluations
    step_done: Callable[[], None]  # call once per finished inversion or denoising step (progress)
    full_precision: Callable[[], ContextManager]  # a block in which the denoiser runs in float32
    batch_size: int | None = None  # samples per model forward (None: any)


@dataclass
class Inverted:
    """The result of :meth:`Backbone.invert`: one row per (mixture, distinct c_inv)."""

    x_top: "torch.Tensor"  # the inverted noisy latents [R, ...]
    noise_maps: list | None = None  # per step [R, ...] (edit-friendly inversion), None for the deterministic one
    extra: dict[str, Any] = field(default_factory=dict)  # other per-row tensors the denoising pass needs

    def select(self, rows: "torch.Tensor") -> "Inverted":
        """The rows each source starts from (``rows[s]`` is source s's inversion row)."""
        pick = (lambda t: t.index_select(0, rows))
        return Inverted(pick(self.x_top), None if self.noise_maps is None else [pick(z) for z in self.noise_maps],
                        {k: pick(v) for k, v in self.extra.items()})


_FAMILIES: dict[str, type["Backbone"]] = {}


class Backbone(ABC):
    """What the separator needs from one text-to-audio latent diffusion family (see the module docstring)."""

    name: ClassVar[str]  # the family, as the manifest records it ("audioldm2")
    models: ClassVar[tuple[ModelCard, ...]] = ()
    samplers: ClassVar[dict[str, str]] = {}  # inversion name -> what the manifest records as the sampler
    pipeline_classes: ClassVar[tuple[str, ...]] = ()  # diffusers pipeline class names (model_index.json) it loads
    layout: ClassVar[str] = ""  # the folder it loads, for messages ("an AudioLDM2Pipeline folder")
    conditions_on_length: ClassVar[bool] = False  # the model call depends on the window's real length

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not inspect.isabstract(cls):
            register(cls)

    def __init__(self, pipe: Any):
        self.pipe = pipe

    # -- recognising and loading (class side) -------------------------------------------------------------

    @classmethod
    def matches(cls, pipe: Any) -> bool:
        """True for a loaded pipeline of this family."""
        return any(klass.__name__ in cls.pipeline_classes for klass in type(pipe).__mro__)

    @classmethod
    def claims_folder(cls, folder: Path) -> bool:
        """True for a local folder this family loads (default: a diffusers folder of one of ``pipeline_classes``)."""
        return bool(cls.pipeline_classes) and pipeline_class_name(folder) in cls.pipeline_classes

    @classmethod
    def claims_repo(cls, model_id: str) -> bool:
        """True for a hub id this family downloads its own way (default: one of its model cards)."""
        return any(card.repo.lower() == model_id.lower() for card in cls.models)

    @classmethod
    def download(cls, model_id: str, offline: bool) -> Path:
        """The local folder of a hub model (downloaded unless ``offline``); default: diffusers' pipeline files."""
        from diffusers import DiffusionPipeline

        return Path(DiffusionPipeline.download(model_id, local_files_only=offline))

    @classmethod
    def prepare_folder(cls, folder: Path) -> Path:
        """The folder :meth:`load` reads for a claimed local folder (a family may convert it first)."""
        return folder

    @classmethod
    def is_cached(cls, model_id: str) -> bool:
        """Whether :meth:`download` would find everything in the cache (answered without torch)."""
        return diffusers_pipeline_is_cached(model_id)

    @classmethod
    def load(cls, folder: Path) -> Any:
        """The pipeline in ``folder`` (float32, CPU); default: the diffusers class its model_index.json names."""
        import diffusers

        from ...errors import ModelNotAvailableError
        from ...logs import library_quiet

        class_name = pipeline_class_name(folder)
        try:
            with library_quiet():
                pipe = getattr(diffusers, class_name).from_pretrained(folder, **cls.components(folder))
        except (OSError, ValueError, KeyError) as exc:
            raise ModelNotAvailableError(f"could not load the {class_name} in {folder}: {exc}") from exc
        pipe.set_progress_bar_config(disable=True)
        return pipe

    @classmethod
    def known_window(cls, folder: Path | None = None) -> float | None:
        """The default window (seconds) before the model loads: from the configs in ``folder``, or with no folder
        the published checkpoints'; None when only the loaded model can tell (no torch, no weights read)."""
        return None

    @classmethod
    def hint(cls, model: str) -> str:
        """Advice for a folder or hub id that holds no model autosep loads but that this family nearly
        recognises (e.g. an unconverted checkpoint); "" when it has none."""
        return ""

    @classmethod
    def components(cls, folder: Path) -> dict[str, Any]:
        """Components :meth:`load` builds itself rather than as model_index.json says (default: none)."""
        return {}

    # -- what it works at ------------------------------------------------------------------------------------

    @property
    @abstractmethod
    def sample_rate(self) -> int: ...

    @property
    @abstractmethod
    def channels(self) -> int: ...

    @property
    @abstractmethod
    def default_window(self) -> float:
        """The window length (seconds) a recording is cut into by default."""

    @property
    def max_steps(self) -> int:
        """The most diffusion steps its sampler takes (the training timesteps)."""
        return int(self.pipe.scheduler.config.num_train_timesteps)

    # -- the networks ----------------------------------------------------------------------------------------

    @property
    def denoiser(self) -> "nn.Module":
        """The network every step calls (the UNet or DiT), run in the compute precision."""
        return self.pipe.unet

    @property
    @abstractmethod
    def text_modules(self) -> list["nn.Module"]:
        """The text encoders (they run once per prompt)."""

    @property
    def float32_modules(self) -> list["nn.Module"]:
        """The networks that run once per window and stay in float32 (the VAE, a vocoder)."""
        return [self.pipe.vae]

    # -- text ------------------------------------------------------------------------------------------------

    @abstractmethod
    def encode(self, prompt: str, device: "torch.device") -> Conditioning:
        """The conditioning of one prompt, batch size 1 (prompts are encoded one at a time, so a prompt's
        conditioning never depends on which others share its batch)."""

    @abstractmethod
    def stack(self, conditionings: list[Conditioning], dtype: "torch.dtype", seconds: float = 0.0) -> dict:
        """The model's keyword arguments for a batch of per-prompt conditionings; ``seconds`` is the window's real
        length (used by families with ``conditions_on_length``)."""

    @abstractmethod
    def predict(self, latents: "torch.Tensor", t: "torch.Tensor", batch: dict, dtype: "torch.dtype") -> "torch.Tensor":
        """The raw model output for ``latents`` at step ``t`` (a timestep or noise level), the denoiser in ``dtype``."""

    # -- audio -----------------------------------------------------------------------------------------------

    def scale(self, wave: "torch.Tensor") -> tuple["torch.Tensor", float]:
        """``wave`` [channels, samples] as the encoder wants its level, and the factor that undoes it."""
        return wave, 1.0

    @abstractmethod
    def padded_length(self, samples: int) -> int:
        """The waveform length the encoder takes for a window of ``samples`` (silence after the audio)."""

    @abstractmethod
    def encode_audio(self, wave: "torch.Tensor", seed: int) -> "torch.Tensor":
        """Latent x0 [1, ...] on the model's device of ``wave`` [channels, padded samples] (float32, CPU);
        ``seed`` is the run's, for a family whose reference samples its VAE posterior."""

    @abstractmethod
    def decode_audio(self, latents: "torch.Tensor") -> "torch.Tensor":
        """Waveforms [B, channels, samples] (float32) of latents [B, ...]."""

    def check_window(self, seconds: float) -> None:
        """Called with each window's length before it is separated (a family may warn about it)."""

    # -- ZeroSep ---------------------------------------------------------------------------------------------

    def model_calls(self, inversion: str, steps: int) -> tuple[int, int]:
        """Model evaluations per row of :meth:`invert` and of :meth:`denoise` (the work a result reports); the
        edit-friendly inversion's last step needs none."""
        return (steps - 1 if inversion == "ddpm" else steps), steps

    @abstractmethod
    def invert(self, x0: "torch.Tensor", prompts: list[str], run: SamplingRun) -> Inverted:
        """Invert ``x0`` [R, ...] to noise, row r with c_inv ``prompts[r]``."""

    @abstractmethod
    def denoise(self, start: Inverted, prompts: list[str], run: SamplingRun) -> "torch.Tensor":
        """Denoise each row of ``start`` with its c_rev ``prompts[row]``: clean latents [len(prompts), ...]."""


# -- the registry -------------------------------------------------------------------------------------------------


def register(family: type[Backbone]) -> None:
    """Add a family (called when its class is defined). Its name and aliases must be its own."""
    if not getattr(family, "name", ""):
        raise TypeError(f"backbone {family.__qualname__} has no name")
    taken = {card.alias: other.name for other in _FAMILIES.values() if other.name != family.name
             for card in other.models}
    clashes = [card.alias for card in family.models if card.alias in taken]
    if clashes:
        raise ValueError(f"backbone {family.name!r}: the model names {clashes} belong to another family")
    _FAMILIES[family.name] = family


def families() -> list[type[Backbone]]:
    """Every registered family, in the order they were defined."""
    return list(_FAMILIES.values())


def model_cards() -> list[ModelCard]:
    return [card for family in families() for card in family.models]


def backbone_for(pipe: Any) -> Backbone:
    """The backbone of a loaded pipeline."""
    for family in families():
        if family.matches(pipe):
            return family(pipe)
    names = ", ".join(f.name for f in families())
    raise TypeError(f"no ZeroSep backbone for {type(pipe).__name__}: the known families are {names}")


def family_for_folder(folder: Path) -> type[Backbone] | None:
    return next((family for family in families() if family.claims_folder(folder)), None)


def family_for_repo(model_id: str) -> type[Backbone] | None:
    return next((family for family in families() if family.claims_repo(model_id)), None)


# -- diffusers folders and cache ------------------------------------------------------------------------------


def pipeline_class_name(folder: Path) -> str | None:
    """The ``_class_name`` of a diffusers pipeline folder's model_index.json (None: no readable index)."""
    try:
        return json.loads((Path(folder) / "model_index.json").read_text()).get("_class_name")
    except (OSError, ValueError, AttributeError):
        return None


_UNWEIGHTED = ("tokenizer", "tokenizer_2", "scheduler", "feature_extractor")


def diffusers_pipeline_is_cached(model_id: str) -> bool:
    """True when the hub cache holds a snapshot with ``model_index.json`` and, for every component it names, a
    folder with that component's config and (for the networks) weights; huggingface_hub only, no torch."""
    from huggingface_hub import try_to_load_from_cache

    index = try_to_load_from_cache(model_id, "model_index.json")
    if not isinstance(index, str):
        return False
    snapshot = Path(index).parent
    try:
        components = json.loads(Path(index).read_text())
    except (OSError, ValueError):
        return False
    for name, spec in components.items():
        if name.startswith("_") or not isinstance(spec, list) or not spec or spec[0] is None:
            continue
        files = [p.name for p in (snapshot / name).glob("*")] if (snapshot / name).is_dir() else []
        if not any(f.endswith(".json") for f in files):
            return False
        if name not in _UNWEIGHTED and not any(f.endswith((".safetensors", ".bin")) for f in files):
            return False
    return True
