"""An input file's fingerprint: what resume compares to tell "the same recording" from "an edited one".

The fingerprint is the SHA-256 of the whole file, read in one sequential pass of 1 MiB blocks (when it is taken
for the manifest the decoder has just read the file, so it comes from the page cache). It is written
``sha256:<hex>``. Manifests of earlier versions hold a hash of the size and the first and last MiB only, which an
edit in the middle of a file of the same size does not change; such a fingerprint is still compared the way it
was made, and the rewritten manifest gets the whole-file one.
"""

from __future__ import annotations

import hashlib
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
