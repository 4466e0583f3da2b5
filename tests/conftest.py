"""Test-wide guards: no network, no wget, an isolated home and cache (the AudioSet metadata ships in the package).

Everything here runs before any test module imports autosep, transformers or panns_inference.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# An isolated home and cache: nothing a developer has downloaded can make a test pass by accident,
# and nothing a test does can touch the developer's own caches.
_SANDBOX = Path(tempfile.mkdtemp(prefix="autosep-tests-"))
os.environ["HOME"] = str(_SANDBOX / "home")
os.environ["AUTOSEP_CACHE"] = str(_SANDBOX / "cache")
os.environ["HF_HOME"] = str(_SANDBOX / "hf")
os.environ["XDG_CACHE_HOME"] = str(_SANDBOX / "xdg-cache")
(_SANDBOX / "home").mkdir(parents=True, exist_ok=True)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

class NetworkAccessError(RuntimeError):
    """Raised when a test tries to reach anything beyond this machine."""


def _is_local(address) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX
        return True
    host = str(address[0])
    return host in {"localhost", "::1", "0.0.0.0"} or host.startswith("127.")


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def _guarded_connect(self, address):
    if not _is_local(address):
        raise NetworkAccessError(f"a test tried to connect to {address!r}; tests must stay offline")
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    if not _is_local(address):
        raise NetworkAccessError(f"a test tried to connect to {address!r}; tests must stay offline")
    return _real_connect_ex(self, address)


def _guarded_getaddrinfo(host, *args, **kwargs):
    if host not in (None, "localhost") and not str(host).startswith("127.") and str(host) not in {"::1", "0.0.0.0"}:
        raise NetworkAccessError(f"a test tried to resolve {host!r}; tests must stay offline")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.socket.connect = _guarded_connect
socket.socket.connect_ex = _guarded_connect_ex
socket.getaddrinfo = _guarded_getaddrinfo

_FETCHERS = ("wget", "curl")
_real_system = os.system
_real_popen_init = subprocess.Popen.__init__


def _mentions_fetcher(command) -> bool:
    text = command if isinstance(command, str) else " ".join(map(str, command))
    return any(word in text.split() or text.startswith(word) for word in _FETCHERS)


def _guarded_system(command):
    if _mentions_fetcher(command):
        raise NetworkAccessError(f"a test ran a download command: {command!r}")
    return _real_system(command)


def _guarded_popen_init(self, args, *rest, **kwargs):
    if _mentions_fetcher(args):
        raise NetworkAccessError(f"a test ran a download command: {args!r}")
    return _real_popen_init(self, args, *rest, **kwargs)


os.system = _guarded_system
subprocess.Popen.__init__ = _guarded_popen_init


@pytest.fixture(scope="session")
def sandbox() -> Path:
    """The per-run folder that holds the isolated HOME and caches."""
    return _SANDBOX


@pytest.fixture(scope="session")
def audioset_dir() -> Path:
    """The folder the AudioSet metadata is read from: the copies shipped in the package (or
    ``AUTOSEP_AUDIOSET_DIR`` when set)."""
    from autosep.taggers.audioset import metadata_folder

    return metadata_folder()


# Tiny random-weight model fixtures, one module per area (each registers its own session-scoped fixtures).
pytest_plugins: list[str] = ["tiny_models.audioldm2", "tiny_models.taggers", "tiny_models.tango",
                             "tiny_models.stable_audio", "tiny_models.video"]
