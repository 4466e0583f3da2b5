"""An object described in words (``--describe "the woman with the red guitar"``) turned into a sound prompt: a
vision-language model (transformers image-text-to-text, loaded once) looks at the video's frames and answers
with a short description of the sound that object makes; the answer becomes the source's c_rev prompt.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..model_files import load_pretrained, resolve_model_id
from . import DEFAULT_DESCRIBE_MODEL
from .frames import Frame

QUESTION = ("Look at these frames from a video. Describe the sound that {description} makes, in three to six "
            "words, the way a sound library would name it (for example \"acoustic guitar strumming\" or \"dog "
            "barking\"). Answer with the description only.")
FRAMES_SHOWN = 4  # frames put before the question: spread over the video, few enough for a small model
MAX_NEW_TOKENS = 24
MAX_WORDS = 8


def clean_answer(text: str) -> str:
    """The model's answer as a prompt: one line, no quotes, bullets or closing punctuation, at most MAX_WORDS."""
    line = next((l for l in str(text).splitlines() if l.strip()), "")
    line = re.sub(r"^\s*(?:[-*\u2022]|\d+[.)]|answer\s*:|assistant\s*:)\s*", "", line, flags=re.I)
    line = line.strip().strip("\"'`").rstrip(".!,;:").strip()
    return " ".join(line.split()[:MAX_WORDS])


def spread(frames: Sequence[Frame], count: int = FRAMES_SHOWN) -> list[Frame]:
    """``count`` frames spread evenly over ``frames`` (all of them when there are fewer)."""
    if len(frames) <= count:
        return list(frames)
    step = (len(frames) - 1) / (count - 1) if count > 1 else 0
    return [frames[round(i * step)] for i in range(count)]


class Describer:
    """A loaded image-text-to-text model and its processor; :meth:`describe` answers for one description."""

    def __init__(self, model, processor, model_id: str):
        self.model, self.processor, self.model_id = model, processor, model_id

    @classmethod
    def from_pretrained(cls, model_id: str | None = None, device: str = "auto") -> "Describer":
        """Load once per run. Raises ModelNotAvailableError with what to do when it cannot be had."""
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from ..devices import resolve_device

        model_id = resolve_model_id(model_id, DEFAULT_DESCRIBE_MODEL)
        why = ("describe model", "smolvlm", "--describe-model", "leave it out with -s PROMPT instead of --describe")
        model = load_pretrained(AutoModelForImageTextToText.from_pretrained, model_id, *why)
        processor = load_pretrained(AutoProcessor.from_pretrained, model_id, *why)
        return cls(model.to(resolve_device(device)).eval(), processor, model_id)

    def messages(self, frames: Sequence[Frame], description: str) -> list[dict]:
        """The chat the model is asked: the frames, then the question about ``description``."""
        content = [{"type": "image", "image": frame.image} for frame in frames]
        content.append({"type": "text", "text": QUESTION.format(description=description.strip())})
        return [{"role": "user", "content": content}]

    def describe(self, frames: Sequence[Frame], description: str) -> tuple[str, list[float]]:
        """The cleaned answer for ``description`` (may be empty) and the times of the frames it was shown."""
        import torch

        shown = spread(frames)
        inputs = self.processor.apply_chat_template(self.messages(shown, description), add_generation_prompt=True,
                                                    tokenize=True, return_dict=True, return_tensors="pt")
        inputs = inputs.to(next(self.model.parameters()).device)
        with torch.no_grad():
            output = self.model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
        answer = self.processor.batch_decode(output[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0]
        return clean_answer(answer), [frame.time_s for frame in shown]
