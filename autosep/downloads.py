"""Atomic, verified downloads for files that do not live on the Hugging Face hub.

A download goes to ``<name>.part`` beside its destination, shows a progress bar, is checked against the
expected size and SHA-256 when they are known, and only then is renamed to its final name. An interrupted or
corrupt download therefore never leaves a file under the final name, and a later run starts again cleanly.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from .errors import DownloadError
from .model_files import offline_mode

_CHUNK = 1 << 20


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path: Path, size: int | None = None, sha256: str | None = None, md5: str | None = None) -> str | None:
    """Return a description of the first mismatch, or ``None`` when the file is as expected.

    Some publishers (Zenodo) give only an MD5; it is checked when no SHA-256 is known.
    """
    if not path.is_file():
        return "missing"
    if size is not None and path.stat().st_size != size:
        return f"size {path.stat().st_size} bytes, expected {size}"
    if sha256 is not None and file_digest(path, "sha256").lower() != sha256.lower():
        return "SHA-256 checksum mismatch"
    if sha256 is None and md5 is not None and file_digest(path, "md5").lower() != md5.lower():
        return "MD5 checksum mismatch"
    return None


def ensure_file(
    url: str,
    dest: str | os.PathLike,
    *,
    size: int | None = None,
    sha256: str | None = None,
    md5: str | None = None,
    verify_cached: bool = False,
    description: str | None = None,
    show_progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Return ``dest``, downloading ``url`` there first unless a verified copy is already in place.

    A copy already in place is checked by size (and SHA-256) only, unless ``verify_cached`` asks for the full
    check, so that every run does not re-hash a large checkpoint; a fresh download is always fully verified.

    Raises :class:`DownloadError` with a message that names the file, where it comes from and how to get it by
    hand, when offline mode is on, the download fails, or the result does not verify.
    """
    dest = Path(dest)
    label = description or dest.name
    if dest.is_file():
        problem = verify_file(dest, size, sha256, md5 if verify_cached else None)
        if problem is None:
            return dest
        # A stale or corrupt copy is never used; it is replaced below.
    if offline_mode():
        raise DownloadError(
            f"{label} is not in the cache ({dest}) and offline mode is on. "
            f"Download it from {url} into that path, or run once without HF_HUB_OFFLINE/AUTOSEP_OFFLINE."
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    try:
        _stream(url, partial, label, show_progress, timeout)
        problem = verify_file(partial, size, sha256, md5)
        if problem is not None:
            raise DownloadError(f"downloaded {label} from {url} but it does not verify ({problem}); try again")
        os.replace(partial, dest)
    except DownloadError:
        partial.unlink(missing_ok=True)
        raise
    except (urllib.error.URLError, OSError, ValueError) as exc:
        partial.unlink(missing_ok=True)
        raise DownloadError(
            f"could not download {label} from {url}: {exc}. Check the network, or place the file at {dest} by hand."
        ) from exc
    except BaseException:  # Ctrl-C: leave nothing half-written behind
        partial.unlink(missing_ok=True)
        raise
    return dest


def _stream(url: str, partial: Path, label: str, show_progress: bool, timeout: float) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "autosep"})
    with urllib.request.urlopen(request, timeout=timeout) as response, open(partial, "wb") as out:
        total = response.headers.get("Content-Length")
        total_bytes = int(total) if total and total.isdigit() else None
        columns = (
            TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, disable=not show_progress, transient=True) as progress:
            task = progress.add_task(f"downloading {label}", total=total_bytes)
            while True:
                block = response.read(_CHUNK)
                if not block:
                    break
                out.write(block)
                progress.advance(task, len(block))
        out.flush()
        os.fsync(out.fileno())


def copy_into_place(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Copy a local file to ``dest`` atomically (temporary file, then rename)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    shutil.copyfile(src, partial)
    os.replace(partial, dest)
    return dest
