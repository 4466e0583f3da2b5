"""How the libraries autosep drives (diffusers, transformers) report: their progress bars and warnings are
silenced while autosep loads and casts models, so autosep's own progress and messages stay readable.
"""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def library_quiet(progress_bars: bool = True, warnings: bool = False):
    """Silence diffusers' and transformers' per-component progress bars (and, if asked, their warnings).

    Hub download bars (huggingface_hub) are left alone: a first download takes minutes and should show progress.
    """
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    saved = [(lib, lib.is_progress_bar_enabled(), lib.get_verbosity())
             for lib in (diffusers_logging, transformers_logging)]
    for lib, _, _ in saved:
        if progress_bars:
            lib.disable_progress_bar()
        if warnings:
            lib.set_verbosity_error()
    try:
        yield
    finally:
        for lib, bars_on, level in saved:
            if bars_on:
                lib.enable_progress_bar()
            lib.set_verbosity(level)


def quiet_library_progress_bars() -> None:
    """Turn off the libraries' own download and loading bars for the whole run (they would drown autosep's)."""
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from diffusers.utils import logging as diffusers_logging
        from transformers.utils import logging as transformers_logging

        diffusers_logging.disable_progress_bar()
        transformers_logging.disable_progress_bar()
    except ImportError:  # either library missing: nothing of theirs to silence
        pass
