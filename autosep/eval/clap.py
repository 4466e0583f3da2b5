"""CLAP-based metrics: CLAP-A, CLAP-T, the CLAP embeddings FAD is computed on, and LPAPS.

Rule of this module: audio reaches CLAP only at the rate its feature extractor declares (48 kHz for
``laion/clap-htsat-unfused``), converted explicitly with :func:`autosep.eval.metrics.resample`, and in pieces
no longer than its window (10 s), so the extractor never random-crops (its ``rand_trunc`` would make the
scores change from run to run). A clip's embedding is the length-weighted mean of its windows' unit
embeddings, normalised again.

- **CLAP-A**: cosine between the audio embeddings of the estimate and of its reference.
- **CLAP-T**: cosine between the estimate's audio embedding and the text embedding of the true source's label.
- **LPAPS** (Manor & Michaeli 2024, "Zero-Shot Unsupervised and Text-Based Audio Editing Using DDPM
  Inversion", used by ZeroSep): LPIPS's recipe over the CLAP audio encoder. For each Swin stage of the
  HTSAT encoder, each channel's feature map is scaled to unit norm over its positions (as the reference
  implementation does), the squared differences between estimate and reference are summed over positions and
  averaged over channels, and the stages are added. There are no learned per-channel weights (none were ever
  trained for CLAP). Estimate and reference are trimmed to the shorter of the two and compared window by
  window at the same positions; the windows' distances are averaged, weighted by length. 0 means identical
  features; larger is further apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..devices import resolve_device
from ..model_files import load_pretrained, resolve_model_id
from .metrics import resample, to_mono

CLAP_MODEL_ID = "laion/clap-htsat-unfused"
_CLAP = ("CLAP model", "clap", "--clap-model")  # what, `autosep models download` alias, option: for the message


def _pooled(output) -> torch.Tensor:
    """``get_*_features`` returns a tensor in transformers 4.x and a model output in 5.x."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class ClapScorer:
    """A CLAP model (transformers ``ClapModel`` + its processor) that embeds audio and text for the metrics."""

    def __init__(self, model: str | Path | None = None, device: str | torch.device = "auto", batch_size: int = 8):
        from transformers import AutoProcessor, ClapModel

        self.model_id = resolve_model_id(model, CLAP_MODEL_ID)
        self.device = resolve_device(device)
        self.processor = load_pretrained(AutoProcessor.from_pretrained, self.model_id, *_CLAP)
        self.model = load_pretrained(ClapModel.from_pretrained, self.model_id, *_CLAP).eval().to(self.device)
        extractor = self.processor.feature_extractor
        self.sample_rate = int(extractor.sampling_rate)
        self.window = int(round(float(getattr(extractor, "max_length_s", 10)) * self.sample_rate))
        self.fused = bool(getattr(self.model.config.audio_config, "enable_fusion", False))
        self.batch_size = int(batch_size)

    # -- audio ------------------------------------------------------------------------------------------------

    def prepare(self, audio: np.ndarray, rate: int) -> np.ndarray:
        """Mono float32 at the model's rate."""
        return resample(to_mono(audio), rate, self.sample_rate).astype(np.float32)

    def _pieces(self, wave: np.ndarray) -> list[np.ndarray]:
        if len(wave) == 0:
            return [np.zeros(self.window, dtype=np.float32)]
        return [wave[i:i + self.window] for i in range(0, len(wave), self.window)]

    def _features(self, pieces: list[np.ndarray]) -> dict[str, torch.Tensor]:
        features = self.processor.feature_extractor(
            pieces, sampling_rate=self.sample_rate, return_tensors="pt",
            truncation="fusion" if self.fused else "rand_trunc", padding="repeatpad")
        inputs = {"input_features": features["input_features"].to(self.device, dtype=self.model.dtype)}
        if "is_longer" in features:
            inputs["is_longer"] = features["is_longer"].to(self.device)
        return inputs

    @torch.inference_mode()
    def embed_audio(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        """Unit audio embeddings ``[n, d]`` of mono waves already at :attr:`sample_rate` (see :meth:`prepare`)."""
        pieces, owner, weight = [], [], []
        for index, wave in enumerate(waves):
            for piece in self._pieces(np.asarray(wave, dtype=np.float32)):
                pieces.append(piece)
                owner.append(index)
                weight.append(max(len(piece), 1))
        chunks = []
        for start in range(0, len(pieces), self.batch_size):
            inputs = self._features(pieces[start:start + self.batch_size])
            chunks.append(torch.nn.functional.normalize(_pooled(self.model.get_audio_features(**inputs)).float(),
                                                        dim=-1))
        per_piece = torch.cat(chunks).cpu().numpy().astype(np.float64)
        out = np.zeros((len(waves), per_piece.shape[1]))
        np.add.at(out, np.asarray(owner), per_piece * np.asarray(weight, dtype=np.float64)[:, None])
        return out / np.linalg.norm(out, axis=1, keepdims=True).clip(1e-12)

    @torch.inference_mode()
    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """Unit text embeddings ``[n, d]``."""
        chunks = []
        for start in range(0, len(texts), 64):
            tokens = self.processor.tokenizer(list(texts[start:start + 64]), padding=True,
                                              return_tensors="pt").to(self.device)
            chunks.append(torch.nn.functional.normalize(_pooled(self.model.get_text_features(**tokens)).float(),
                                                        dim=-1))
        return torch.cat(chunks).cpu().numpy().astype(np.float64)

    # -- LPAPS ------------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def _stage_features(self, pieces: list[np.ndarray]) -> list[torch.Tensor]:
        """Per Swin stage, features ``[pieces, channels, positions]`` (after each stage, as HTSAT's layers)."""
        stages: list[list[torch.Tensor]] = []
        for start in range(0, len(pieces), self.batch_size):
            inputs = self._features(pieces[start:start + self.batch_size])
            output = self.model.audio_model(**inputs, output_hidden_states=True)
            # hidden_states[0] is the patch embedding; the stages follow, shaped [batch, channels, freq, time].
            for i, hidden in enumerate(output.hidden_states[1:]):
                if len(stages) <= i:
                    stages.append([])
                stages[i].append(hidden.float().flatten(2))
        return [torch.cat(parts) for parts in stages]

    def lpaps_many(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[float]:
        """LPAPS of each ``(estimate, reference)`` pair of mono waves at :attr:`sample_rate`."""
        a_pieces, b_pieces, owner, weight = [], [], [], []
        for index, (a, b) in enumerate(pairs):
            n = min(len(a), len(b))
            for piece_a, piece_b in zip(self._pieces(np.asarray(a[:n], np.float32)),
                                        self._pieces(np.asarray(b[:n], np.float32))):
                a_pieces.append(piece_a)
                b_pieces.append(piece_b)
                owner.append(index)
                weight.append(max(len(piece_a), 1))
        if not a_pieces:
            return []
        distance = torch.zeros(len(a_pieces))
        for stage_a, stage_b in zip(self._stage_features(a_pieces), self._stage_features(b_pieces)):
            unit_a = torch.nn.functional.normalize(stage_a, dim=2, eps=1e-10)
            unit_b = torch.nn.functional.normalize(stage_b, dim=2, eps=1e-10)
            distance += ((unit_a - unit_b) ** 2).sum(dim=2).mean(dim=1).cpu()
        totals = np.zeros(len(pairs))
        weights = np.zeros(len(pairs))
        np.add.at(totals, np.asarray(owner), distance.numpy().astype(np.float64) * np.asarray(weight))
        np.add.at(weights, np.asarray(owner), np.asarray(weight, dtype=np.float64))
        return list(totals / weights.clip(1))


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two ``[n, d]`` arrays."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True).clip(1e-12)
    b = b / np.linalg.norm(b, axis=1, keepdims=True).clip(1e-12)
    return np.sum(a * b, axis=1)
