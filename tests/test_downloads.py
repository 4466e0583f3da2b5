"""Atomic, verified downloads (served from a loopback HTTP server, never the internet)."""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from autosep.downloads import ensure_file
from autosep.errors import DownloadError

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


@pytest.fixture()
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    (root / "model.pth").write_bytes(PAYLOAD)
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(root), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.RequestHandlerClass.log_message = lambda *a: None
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture()
def online(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)


def test_download_verifies_and_renames(server, tmp_path, online):
    dest = tmp_path / "cache" / "model.pth"
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    path = ensure_file(f"{server}/model.pth", dest, size=len(PAYLOAD), sha256=digest, show_progress=False)
    assert path == dest and dest.read_bytes() == PAYLOAD
    assert not list(dest.parent.glob("*.part"))


def test_checksum_mismatch_leaves_nothing(server, tmp_path, online):
    dest = tmp_path / "model.pth"
    with pytest.raises(DownloadError, match="does not verify"):
        ensure_file(f"{server}/model.pth", dest, sha256="0" * 64, show_progress=False)
    assert not dest.exists() and not dest.with_name("model.pth.part").exists()


def test_corrupt_cached_copy_is_replaced(server, tmp_path, online):
    dest = tmp_path / "model.pth"
    dest.write_bytes(b"truncated")
    ensure_file(f"{server}/model.pth", dest, size=len(PAYLOAD), show_progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_missing_remote_file_is_a_clear_error(server, tmp_path, online):
    with pytest.raises(DownloadError, match="could not download"):
        ensure_file(f"{server}/absent.pth", tmp_path / "absent.pth", show_progress=False)
    assert not (tmp_path / "absent.pth").exists()


def test_offline_mode_names_the_file_and_url(tmp_path):
    with pytest.raises(DownloadError, match="offline") as info:
        ensure_file("https://zenodo.org/record/1/files/x.pth", tmp_path / "x.pth", description="Cnn14 checkpoint")
    assert "Cnn14 checkpoint" in str(info.value) and "zenodo.org" in str(info.value)


def test_verified_copy_is_not_downloaded_again(tmp_path):
    dest = tmp_path / "model.pth"
    dest.write_bytes(PAYLOAD)
    # Offline and no server: succeeding proves no request was made.
    assert ensure_file("http://127.0.0.1:9/model.pth", dest, size=len(PAYLOAD)) == dest
