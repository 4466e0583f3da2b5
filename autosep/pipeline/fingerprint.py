"""An input file's fingerprint: what resume compares to tell "the same recording" from "an edited one".

The fingerprint is the SHA-256 of the whole file, read in one sequential pass of 1 MiB blocks; for the manifest
it is taken on a thread while the recording is decoded (:class:`FingerprintWhileReading`). It is written
``sha256:<hex>``. Manifests of earlier versions hold a hash of the size and the first and last MiB only, which an
edit in the middle of a file of the same size does not change; such a fingerprint is still compared the way it
was made, and the rewritten manifest gets the whole-file one.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

_BLOCK = 1 << 20
PREFIX = "sha256:"


def input_fingerprint(path: Path) -> str:
    """``sha256:`` and the hex digest of every byte of ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while True:
            block = handle.read(_BLOCK)
            if not block:
                break
            digest.update(block)
    return PREFIX + digest.hexdigest()


def legacy_fingerprint(path: Path) -> str:
    """The fingerprint of manifests before the whole-file one: the size and the first and last MiB, hashed."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        size = handle.seek(0, 2)
        digest.update(str(size).encode())
        handle.seek(0)
        digest.update(handle.read(_BLOCK))
        handle.seek(max(0, size - _BLOCK))
        digest.update(handle.read(_BLOCK))
    return digest.hexdigest()


def same_input(recorded: str, path: Path) -> bool:
    """Whether the file at ``path`` is the one a manifest's fingerprint ``recorded`` was taken of."""
    if recorded.startswith(PREFIX):
        return recorded == input_fingerprint(path)
    return recorded == legacy_fingerprint(path)


class FingerprintWhileReading:
    """:func:`input_fingerprint` taken on a thread beside the recording's first decoding pass: both read the
    file from its start, so one of the two reads comes from the page cache and the hash (``hashlib`` releases
    the GIL on large blocks) costs no wall time of its own. :meth:`result` waits for it."""

    def __init__(self, path: Path):
        self._value: str | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(Path(path),), name="autosep-fingerprint",
                                        daemon=True)
        self._thread.start()

    def _run(self, path: Path) -> None:
        try:
            self._value = input_fingerprint(path)
        except BaseException as exc:  # handed to the caller of result(), in its thread
            self._error = exc

    def result(self) -> str:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value
