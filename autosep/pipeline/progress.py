"""Progress reporting hooks the pipeline calls, and the two displays the command line uses: rich bars on a
terminal, plain log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time

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


class LogProgress(Progress):
    """Plain lines for logs and pipes."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self._files, self._index, self._windows, self._units = 0, 0, 0, 0
        self._last_window_log = 0.0

    def _say(self, text: str) -> None:
        print(f"autosep: {text}", file=self.stream, flush=True)

    def start_batch(self, total_files: int) -> None:
        self._files = total_files

    def start_file(self, name: str) -> None:
        self._index += 1
        self._say(f"[{self._index}/{self._files}] {name}")

    def stage(self, text: str) -> None:
        self._say(f"  {text}")

    def start_windows(self, windows: int, units: int) -> None:
        self._windows, self._units = windows, units
        self._say(f"  separating: {windows} windows, {units} window x source runs")

    def window_done(self, index: int, units: int) -> None:
        now = time.monotonic()
        if index + 1 == self._windows or now - self._last_window_log > 10:
            self._last_window_log = now
            self._say(f"  window {index + 1}/{self._windows}")

    def end_file(self, name: str, status: str) -> None:
        self._say(f"  -> {status}")

    def warn(self, message: str) -> None:
        self._say(f"warning: {message}")


class RichProgress(Progress):
    """Bars for files, windows x sources and diffusion steps."""

    def __init__(self, console):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bars, TextColumn, TimeRemainingColumn

        self.console = console
        self.bars = Bars(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                         console=console, transient=True)
        self.bars.start()
        self.files = self.bars.add_task("files", total=None)
        self.windows = self.bars.add_task("windows x sources", total=None, visible=False)
        self.diffusion = self.bars.add_task("diffusion steps", total=None, visible=False)

    def start_batch(self, total_files: int) -> None:
        self.bars.update(self.files, total=total_files)

    def start_file(self, name: str) -> None:
        self.bars.update(self.files, description=f"files ({name})")
        self.bars.update(self.windows, visible=False, completed=0)
        self.bars.update(self.diffusion, visible=False, completed=0)

    def stage(self, text: str) -> None:
        self.bars.update(self.windows, description=text, visible=True, total=None, completed=0)

    def start_windows(self, windows: int, units: int) -> None:
        self.bars.update(self.windows, description="windows x sources", total=max(units, 1), completed=0,
                         visible=True)

    def window_done(self, index: int, units: int) -> None:
        self.bars.advance(self.windows, units)

    def steps(self, done: int, total: int) -> None:
        self.bars.update(self.diffusion, total=total, completed=done, visible=True)

    def end_file(self, name: str, status: str) -> None:
        self.bars.advance(self.files)
        self.console.log(f"{name}: {status}", markup=False, highlight=False)

    def warn(self, message: str) -> None:
        self.console.log(f"warning: {message}", style="yellow", markup=False, highlight=False)

    def close(self) -> None:
        self.bars.stop()
