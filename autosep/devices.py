"""Device and precision choice shared by the separator and the taggers.

torch is imported when a device or precision is resolved (a model is about to load), not before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DTYPE_NAMES = ("auto", "fp32", "fp16", "bf16")  # what --dtype takes (resolve_dtype also knows the long names)


def resolve_device(device: "str | torch.device" = "auto") -> "torch.device":
    """``"auto"`` picks cuda, then mps, then cpu; anything else is passed to ``torch.device`` and checked."""
    import torch

    if isinstance(device, torch.device):
        return device
    name = str(device).strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {device!r}: pass 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but CUDA is not available here: pass 'cpu' or 'auto'")
    if resolved.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {device!r} was asked for but MPS is not available here: pass 'cpu' or 'auto'")
    return resolved


_DTYPES = {
    "fp32": "float32", "float32": "float32",
    "fp16": "float16", "float16": "float16", "half": "float16",
    "bf16": "bfloat16", "bfloat16": "bfloat16",
}


def resolve_dtype(dtype: "str | torch.dtype | None", device: "torch.device") -> "torch.dtype":
    """``None``/``"auto"``: fp16 on CUDA, fp32 elsewhere; otherwise one of fp32, fp16, bf16."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or str(dtype).lower() == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    try:
        return getattr(torch, _DTYPES[str(dtype).lower()])
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}: pass 'auto', 'fp32', 'fp16' or 'bf16'") from None
