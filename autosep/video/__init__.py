"""Looking at the picture of a video input: frames sampled with PyAV (``frames``), what is on screen scored by a
zero-shot image-text model (``onscreen``: CLIP or SigLIP through transformers), and an object described in words
turned into a sound prompt by a vision-language model (``describe``).

This part sits beside the taggers: it reads a file's frames and answers questions about them, and never imports
the pipeline, which uses it as evidence for the sources the audio tagger heard (never to invent one) and for the
prompts of described objects.
"""

from __future__ import annotations

from ..model_files import KnownModel

DEFAULT_VISUAL_MODEL = "openai/clip-vit-base-patch32"
DEFAULT_DESCRIBE_MODEL = "HuggingFaceTB/SmolVLM-256M-Instruct"

KNOWN_MODELS: list[KnownModel] = [
    KnownModel(
        alias="clip", role="visual", source=DEFAULT_VISUAL_MODEL, size="605 MB", licence="MIT",
        description="OpenAI CLIP ViT-B/32: what is on screen in a video's frames (zero-shot); the default "
                    "--visual-model",
    ),
    KnownModel(
        alias="smolvlm", role="describe", source=DEFAULT_DESCRIBE_MODEL, size="513 MB", licence="Apache-2.0",
        description="SmolVLM-256M-Instruct vision-language model: --describe turns an object on screen into a "
                    "sound prompt; the default --describe-model",
    ),
]
