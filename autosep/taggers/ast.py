"""Audio Spectrogram Transformer fine-tuned on AudioSet (mAP 0.459), through transformers.

16 kHz, 10.24 s windows (the feature extractor's 1024 frames of 10 ms), 5.12 s hop. The classifier is
multi-label: sigmoid on the logits (the transformers audio-classification pipeline would apply a softmax).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..devices import resolve_device
from ..errors import ModelNotAvailableError
from ..model_files import KnownModel
from .audioset import load_ontology
from .base import Tagger
from .hub import from_pretrained, resolve_model_id

if TYPE_CHECKING:  # torch is imported when the model is built, so listing the taggers does not pay for it
    import torch

AST_MODEL_ID = "MIT/ast-finetuned-audioset-10-10-0.4593"


class ASTTagger(Tagger):
    name = "ast"
    weights = KnownModel(
        alias="ast", role="tagger", source=AST_MODEL_ID, size="346 MB", licence="BSD-3-Clause",
        description="Audio Spectrogram Transformer AudioSet tagger (mAP 0.459), 16 kHz",
    )
    sample_rate = 16000
    window_seconds = 10.24
    default_threshold = 0.25  # same sigmoid operating point as PANNs (both trained with BCE on AudioSet)

    def __init__(self, model: str | Path | None = None, device: str | torch.device = "auto"):
        from transformers import ASTFeatureExtractor, ASTForAudioClassification

        self.model_id = resolve_model_id(model, AST_MODEL_ID)
        self.device = resolve_device(device)
        self.extractor = from_pretrained(ASTFeatureExtractor.from_pretrained, self.model_id, "ast")
        self.model = from_pretrained(ASTForAudioClassification.from_pretrained, self.model_id, "ast")
        self.model.eval().to(self.device)
        self.sample_rate = int(self.extractor.sampling_rate)
        self.window_seconds = self.extractor.max_length / 100.0  # 10 ms frames
        id2label = self.model.config.id2label
        self.labels = [str(id2label[i]) for i in range(len(id2label))]
        ontology = load_ontology()
        if not any(ontology.lookup(label) for label in self.labels):
            raise ModelNotAvailableError(f"{self.model_id}: its labels are not AudioSet classes")

    def score_windows(self, windows: list[np.ndarray]) -> np.ndarray:
        import torch

        features = self.extractor(windows, sampling_rate=self.sample_rate, return_tensors="pt")
        with torch.inference_mode():
            values = features["input_values"].to(self.device, dtype=self.model.dtype)
            logits = self.model(input_values=values).logits
            return torch.sigmoid(logits.float()).cpu().numpy()
