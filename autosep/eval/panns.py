"""PANNs Cnn14 embeddings for FAD (``--fad-embedding panns``), the 2048-d layer before Cnn14's classifier.

Rule of this module: audio reaches Cnn14 at its 32 kHz, converted explicitly, in pieces of at most 10 s (the
window it was trained on); a piece shorter than one second is tiled to one second (Cnn14's pooling needs
about 0.3 s, and zero padding would pull the time-averaged features towards silence). A clip's embedding is
the length-weighted mean of its pieces' embeddings. The checkpoint is the one the PANNs tagger uses
(downloaded and verified by autosep, or ``--panns-model`` with a Cnn14 ``.pth``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .metrics import resample, to_mono

MIN_PIECE_SECONDS = 1.0
PIECE_SECONDS = 10.0


class PannsEmbedder:
    name = "panns"

    def __init__(self, model: str | Path | None = None, device: str | torch.device = "auto", batch_size: int = 8):
        from ..taggers.panns import PannsTagger

        tagger = PannsTagger(model, device=device)  # resolves, downloads (verified) and checks the checkpoint
        self.model = tagger.model.eval()
        self.device = tagger.device
        self.model_id = tagger.model_id
        self.sample_rate = int(tagger.sample_rate)
        self.batch_size = int(batch_size)

    def prepare(self, audio: np.ndarray, rate: int) -> np.ndarray:
        """Mono float32 at 32 kHz."""
        return resample(to_mono(audio), rate, self.sample_rate).astype(np.float32)

    def _pieces(self, wave: np.ndarray) -> list[np.ndarray]:
        size, least = int(PIECE_SECONDS * self.sample_rate), int(MIN_PIECE_SECONDS * self.sample_rate)
        pieces = [wave[i:i + size] for i in range(0, max(len(wave), 1), size)]
        out = []
        for piece in pieces:
            if len(piece) == 0:
                piece = np.zeros(least, dtype=np.float32)
            elif len(piece) < least:
                piece = np.tile(piece, -(-least // len(piece)))[:least]
            out.append(piece)
        return out

    @torch.inference_mode()
    def embed_audio(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        """Embeddings ``[n, 2048]`` (the checkpoint's fc1 width) of mono waves already at :attr:`sample_rate` (see :meth:`prepare`)."""
        pieces, owner, weight = [], [], []
        for index, wave in enumerate(waves):
            wave = np.asarray(wave, dtype=np.float32)
            for piece in self._pieces(wave):
                pieces.append(piece)
                owner.append(index)
                weight.append(float(max(min(len(piece), len(wave)), 1)))  # a tiled piece counts for its audio
        rows: dict[int, np.ndarray] = {}
        by_length: dict[int, list[int]] = {}
        for k, piece in enumerate(pieces):  # only pieces of one length stack into a batch
            by_length.setdefault(len(piece), []).append(k)
        for members in by_length.values():
            for start in range(0, len(members), self.batch_size):
                chunk = members[start:start + self.batch_size]
                batch = torch.from_numpy(np.stack([pieces[k] for k in chunk])).to(self.device)
                embedding = self.model(batch, None)["embedding"].float().cpu().numpy().astype(np.float64)
                rows.update(zip(chunk, embedding))
        if not pieces:
            return np.zeros((0, self.model.fc1.out_features))
        table = np.stack([rows[k] for k in range(len(pieces))])
        out = np.zeros((len(waves), table.shape[1]))
        totals = np.zeros(len(waves))
        np.add.at(out, np.asarray(owner), table * np.asarray(weight)[:, None])
        np.add.at(totals, np.asarray(owner), np.asarray(weight))
        return out / totals[:, None]
