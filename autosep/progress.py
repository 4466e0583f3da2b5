"""Progress reporting hooks the pipeline calls; the command line shows them with rich or as log lines."""

from __future__ import annotations

import logging

log = logging.getLogger("autosep")


class Progress:
    """Silent by default (the Python API); subclasses display. All hooks are optional to override."""

    def start_batch(self, total_files: int) -> None: ...

    def start_file(self, name: str) -> None: ...

    def stage(self, text: str) -> None: ...

    def start_windows(self, windows: int, units: int) -> None:
        """``units`` = sum over windows of the sources separated in each (windows x sources)."""

    def window_done(self, index: int, units: int) -> None: ...

    def steps(self, done: int, total: int) -> None:
        """Diffusion steps inside the current window (the separator's own progress callback)."""

    def end_file(self, name: str, status: str) -> None: ...

    def warn(self, message: str) -> None:
        log.warning(message)

    def close(self) -> None: ...
