"""Stopping a run on Ctrl-C (SIGINT) or SIGTERM at a point where it can clean up, and soon.

Python's default turns a signal into a KeyboardInterrupt wherever the main thread happens to be: inside the
cleanup that deletes a recording's temporary files (which then stay behind), or after a UNet forward that takes
seconds. Here, while a recording is being processed (:func:`deferred`), a first signal only marks the run as
stopping; the work's own loops call :func:`checkpoint` between steps (every diffusion step, window and read
block), which raises :class:`Stopped` (a KeyboardInterrupt) there, so the usual unwinding removes the
recording's temporaries. Outside such a section, or on a second signal, it raises at once as Python does.
"""

from __future__ import annotations

import contextlib
import signal
import threading

_stop = threading.Event()
_signal: int | None = None  # the signal that asked the run to stop
_deferring = 0  # nesting depth of deferred() sections


class Stopped(KeyboardInterrupt):
    """The run was asked to stop (Ctrl-C or SIGTERM) and stopped at a checkpoint."""


def checkpoint() -> None:
    """Raise :class:`Stopped` when a stop was asked for; cheap enough to call once per diffusion step."""
    if _stop.is_set():
        raise Stopped


def terminated() -> bool:
    """Whether the stop came from SIGTERM (exit 143) rather than Ctrl-C (exit 130)."""
    return _signal == signal.SIGTERM


@contextlib.contextmanager
def deferred():
    """A section whose loops call :func:`checkpoint`: a first signal inside it waits for the next one."""
    global _deferring
    checkpoint()
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1


def _handle(signum, frame) -> None:
    global _signal
    first = not _stop.is_set()
    _signal = signum
    _stop.set()
    if not (first and _deferring):
        raise Stopped


class handling_signals:
    """SIGINT and SIGTERM stop the run as above for the duration of the block (main thread only; elsewhere the
    handlers are left as they are). The stop request is cleared on entry and on exit; read :func:`terminated`
    inside the block."""

    def __enter__(self) -> "handling_signals":
        global _signal
        _stop.clear()
        _signal = None
        self.previous: dict[int, object] = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                self.previous[signum] = signal.signal(signum, _handle)
            except ValueError:  # not the main thread: leave signals alone
                break
        return self

    def __exit__(self, *exc) -> None:
        global _signal
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        _stop.clear()  # the run is over: a later one in this process (the Python API, a test) starts afresh
        _signal = None
