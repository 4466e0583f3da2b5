"""Which text each source is inverted with (c_inv), following ZeroSep's two choices."""

from __future__ import annotations

from typing import Sequence

from .settings import INVERSION_PROMPT_CHOICES, INVERSIONS, check_inv_prompt  # noqa: F401  (names re-exported)


def check_sources(sources: Sequence[str]) -> list[str]:
    """The source prompts as a list of non-empty, distinct strings, or a ValueError saying what to pass."""
    if isinstance(sources, str):
        raise ValueError(f"sources must be a list of prompts, e.g. [{sources!r}], not a single string")
    sources = list(sources) if sources is not None else []
    if not sources:
        raise ValueError("sources is empty: pass at least one text prompt, e.g. sources=['cello', 'flute']")
    for source in sources:
        if not isinstance(source, str) or not source.strip():
            raise ValueError(f"every source must be a non-empty text prompt, got {source!r} in {sources!r}")
    if len(set(sources)) != len(sources):
        raise ValueError(f"sources has duplicates ({sources!r}): pass each sound once")
    return sources


def inversion_prompts(sources: Sequence[str], inv_prompt: str = "others") -> list[str]:
    """c_inv for each source.

    ``"others"``: the other sources' prompts joined with ", " (empty when there is a single source), so the
    inversion explains away what the target is not. ``"null"``: the empty prompt for every source, which makes
    the inversion independent of the target (the separator then computes it once and shares it).
    """
    sources = check_sources(sources)
    if check_inv_prompt(inv_prompt) == "null":
        return [""] * len(sources)
    return [", ".join(other for j, other in enumerate(sources) if j != i) for i in range(len(sources))]
