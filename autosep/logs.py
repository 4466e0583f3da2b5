"""How autosep and the libraries it drives report.

The command line sets one level (``-q``: errors only, ``-v``: everything, else warnings) with
:func:`route_library_output`; from then on Python warnings and the loggers of transformers, diffusers and
accelerate all go through ``logging`` with autosep's format, so the level applies to them too (transformers and
diffusers install handlers of their own when they are imported: :func:`apply_library_level` replaces them, and
runs whenever autosep loads a model). Their per-component progress bars are silenced while models load, so
autosep's own progress stays readable. Nothing here imports those libraries before a model loads.
"""

from __future__ import annotations

import contextlib
import logging
import sys

_LIBRARIES = ("transformers", "diffusers")
_level: int | None = None  # the command line's level; None: leave the libraries as they are (the Python API)
_bars_off = False  # the command line turned the libraries' progress bars off


def setup_logging(verbose: bool = False, quiet: bool = False) -> int:
    """The one logging setup of every command: ``-v`` everything, ``-q`` errors only, else warnings, in autosep's
    format, with the libraries routed through it (:func:`route_library_output`). Returns the level."""
    level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING
    logging.basicConfig(level=level, format="autosep: %(message)s")
    if not verbose:
        for handler in logging.getLogger().handlers:
            handler.addFilter(_said_by_autosep)
    # huggingface_hub prints through its own handler and also propagates to ours: keep a single copy.
    logging.getLogger("huggingface_hub").propagate = False
    route_library_output(level)  # -q hides the libraries' warnings too, -v shows their notices
    return level


# Library warnings autosep already gives in its own words (a -s prompt longer than the text encoders read is
# warned about before any model loads): the tokenizers' and pipelines' own lines, once per window, are noise.
_SAID_BY_AUTOSEP = ("The following part of your input was truncated",
                    "Token indices sequence length is longer than the specified maximum")


def _said_by_autosep(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(_SAID_BY_AUTOSEP)


def route_library_output(level: int) -> None:
    """Send Python warnings and the libraries' logs through ``logging`` at ``level``."""
    global _level
    _level = level
    logging.captureWarnings(True)
    for name in ("py.warnings", "accelerate", *_LIBRARIES):
        logging.getLogger(name).setLevel(level)
    apply_library_level()


def apply_library_level() -> None:
    """Route transformers' and diffusers' own loggers (once they are imported) to autosep's handler and level,
    and turn their progress bars off when the command line asked."""
    for name in _LIBRARIES:
        library = sys.modules.get(f"{name}.utils.logging")
        if library is None:
            continue  # not imported yet: nothing of theirs to route
        if _bars_off:
            library.disable_progress_bar()
        if _level is not None:
            library.disable_default_handler()
            library.enable_propagation()
            library.set_verbosity(_level)


@contextlib.contextmanager
def library_quiet(progress_bars: bool = True, warnings: bool = False):
    """Silence diffusers' and transformers' per-component progress bars (and, if asked, their warnings).

    Hub download bars (huggingface_hub) are left alone: a first download takes minutes and should show progress.
    """
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    apply_library_level()
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
    """Turn off the libraries' own download and loading bars for the whole run (they would drown autosep's):
    now for huggingface_hub (through its environment variable), and for transformers and diffusers as soon as
    they are imported (:func:`apply_library_level`), so nothing heavy is imported here."""
    import os

    global _bars_off
    _bars_off = True
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    apply_library_level()


@contextlib.contextmanager
def captured_native_stderr():
    """Collect what C libraries write to file descriptor 2 inside the block (mpg123's "Warning: Xing stream
    size off..." from libsndfile's mp3 decoder), instead of letting it reach the user's terminal raw; yields a
    list that holds the text once the block ends. Python's own writes to ``sys.stderr`` are flushed first.
    Keep the block short: other threads' writes to the terminal in the meantime are collected too."""
    import os
    import tempfile

    lines: list[str] = []
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real descriptor 2 (an embedding host): leave it alone
        yield lines
        return
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(line for line in sink.read().decode("utf-8", "replace").splitlines() if line.strip())
