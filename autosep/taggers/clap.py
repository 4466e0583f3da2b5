"""CLAP zero-shot tagging (LAION ``clap-htsat-unfused``) over an open vocabulary, through transformers.

48 kHz, 10 s windows, 5 s hop. The vocabulary is the 527 AudioSet classes (each embedded through its prompt,
e.g. "dog barking") or the user's own phrases (a text file, one per line; phrases that are AudioSet class
names count as those classes, others stay open-set).

Calibration. Cosine similarities are not probabilities, and a softmax over candidates would force the
scores of unrelated classes to compete. autosep compares each phrase with a neutral reference prompt,
``"background noise"``, and turns the margin into an independent presence score::

    p(class) = sigmoid(scale * (cos(audio, class) - cos(audio, "background noise")))

where ``scale`` is CLAP's own learned audio-text logit scale (the temperature it was trained with). p = 0.5
means "as similar as to plain background noise"; the default threshold 0.75 asks for a margin of about
ln(3) ~ 1.1 logits over it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..devices import resolve_device
from ..errors import AutosepError
from ..model_files import KnownModel
from .audioset import load_ontology
from .base import Tagger
from .hub import from_pretrained, resolve_model_id
from .sources import OPEN_SET_PREFIX
from .prompts import clean_phrase, prompt_for

if TYPE_CHECKING:  # torch is imported when the model is built, so listing the taggers does not pay for it
    import torch

    from .settings import TaggingSettings

CLAP_MODEL_ID = "laion/clap-htsat-unfused"
NEUTRAL_PROMPT = "background noise"


class VocabularyError(AutosepError):
    """The user's CLAP vocabulary file could not be used."""


def read_vocabulary(vocab: str | Path | Sequence[str]) -> list[str]:
    """Phrases from a text file (one per line, ``#`` comments) or a list; duplicates and blanks dropped."""
    if isinstance(vocab, (str, Path)):
        path = Path(vocab).expanduser()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise VocabularyError(f"{path}: cannot read the vocabulary file ({exc}); pass a UTF-8 text file "
                                  "with one sound description per line") from None
    else:
        lines = list(vocab)
    phrases = [clean_phrase(line.split("#", 1)[0]) for line in lines]
    phrases = list(dict.fromkeys(p for p in phrases if p))
    if not phrases:
        raise VocabularyError(f"{vocab}: the vocabulary is empty; put one sound description per line")
    return phrases


class ClapTagger(Tagger):
    name = "clap"
    aliases = ("laion-clap",)
    weights = KnownModel(
        alias="clap", role="tagger", source=CLAP_MODEL_ID, size="615 MB", licence="Apache-2.0",
        description="LAION CLAP zero-shot tagger over AudioSet names or your own vocabulary, 48 kHz",
    )
    takes_vocab = True
    sample_rate = 48000
    window_seconds = 10.0
    default_threshold = 0.75

    def __init__(self, model: str | Path | None = None, device: str | torch.device = "auto",
                 vocab: str | Path | Sequence[str] | None = None):
        from transformers import AutoProcessor, ClapModel

        self.model_id = resolve_model_id(model, CLAP_MODEL_ID)
        self.device = resolve_device(device)
        self.processor = from_pretrained(AutoProcessor.from_pretrained, self.model_id, "clap")
        self.model = from_pretrained(ClapModel.from_pretrained, self.model_id, "clap")
        self.model.eval().to(self.device)
        extractor = self.processor.feature_extractor
        self.sample_rate = int(extractor.sampling_rate)
        self.window_seconds = float(getattr(extractor, "max_length_s", 10))
        self.labels, texts = self._vocabulary(vocab)
        self.scale = float(self.model.logit_scale_a.detach().exp())
        self.text_embeddings = self._embed_texts(texts)
        self.neutral_embedding = self._embed_texts([NEUTRAL_PROMPT])[0]

    @classmethod
    def from_settings(cls, settings: TaggingSettings, device: str | torch.device = "auto") -> ClapTagger:
        return cls(settings.model, device, settings.vocab)

    @staticmethod
    def _vocabulary(vocab) -> tuple[list[str], list[str]]:
        ontology = load_ontology()
        if vocab is None:
            nodes = [ontology.nodes[mid] for mid in ontology.class_mids]
            return [n.id for n in nodes], [prompt_for(n.name, n.id) for n in nodes]
        labels, texts = [], []
        for phrase in read_vocabulary(vocab):
            node = ontology.lookup(phrase)
            labels.append(node.id if node is not None else OPEN_SET_PREFIX + phrase)
            texts.append(prompt_for(node.name, node.id) if node is not None else phrase)
        return labels, texts

    def _embed_texts(self, texts: list[str], batch: int = 64) -> torch.Tensor:
        import torch

        chunks = []
        with torch.inference_mode():
            for i in range(0, len(texts), batch):
                tokens = self.processor.tokenizer(texts[i:i + batch], padding=True,
                                                  return_tensors="pt").to(self.device)
                chunks.append(_pooled(self.model.get_text_features(**tokens)))
            return torch.nn.functional.normalize(torch.cat(chunks).float(), dim=-1)

    def score_windows(self, windows: list[np.ndarray]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self._score(windows)

    def _score(self, windows: list[np.ndarray]) -> np.ndarray:
        import torch

        extractor = self.processor.feature_extractor
        fused = bool(getattr(self.model.config.audio_config, "enable_fusion", False))
        features = extractor(windows, sampling_rate=self.sample_rate, return_tensors="pt",
                             truncation="fusion" if fused else "rand_trunc", padding="repeatpad")
        inputs = {"input_features": features["input_features"].to(self.device, dtype=self.model.dtype)}
        if "is_longer" in features:
            inputs["is_longer"] = features["is_longer"].to(self.device)
        audio = torch.nn.functional.normalize(_pooled(self.model.get_audio_features(**inputs)).float(), dim=-1)
        margin = audio @ self.text_embeddings.T - (audio @ self.neutral_embedding)[:, None]
        return torch.sigmoid(self.scale * margin).cpu().numpy()


def _pooled(output) -> torch.Tensor:
    """``get_*_features`` returns a tensor in transformers 4.x and a model output in 5.x."""
    import torch

    return output if isinstance(output, torch.Tensor) else output.pooler_output
