"""PANNs: checkpoint download and loading without panns_inference's wget, on a tiny Cnn14-shaped checkpoint."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from autosep.errors import DownloadError, ModelNotAvailableError
from autosep.taggers import load_tagger
from autosep.taggers import panns

REPO = Path(__file__).resolve().parents[2]

# Run in a fresh interpreter with an empty HOME: os.system("wget ...") and any socket use abort it.
GUARDED_SCRIPT = textwrap.dedent("""
    import os, socket, sys
    def no_fetch(command):
        if "wget" in command or "curl" in command:
            print("FETCH ATTEMPTED:", command, flush=True)
            os._exit(17)
        return 0
    def no_network(*args, **kwargs):
        print("NETWORK ATTEMPTED", args, flush=True)
        os._exit(18)
    os.system = no_fetch
    socket.socket.connect = no_network
    socket.getaddrinfo = no_network
""")


def _run_guarded(body: str, home: Path, *args: str) -> subprocess.CompletedProcess:
    script = home.parent / "guarded.py"
    script.write_text(GUARDED_SCRIPT + textwrap.dedent(body))
    env = dict(os.environ, HOME=str(home), PYTHONPATH=str(REPO), AUTOSEP_CACHE=str(home.parent / "cache"))
    return subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True, text=True,
                          timeout=240)


@pytest.mark.slow  # a fresh Python process loading torch and the tagger: about 25 s
def test_loading_through_autosep_with_empty_home_never_fetches(tmp_path, tiny_cnn14_checkpoint):
    home = tmp_path / "home"
    home.mkdir()
    body = """
        import numpy as np
        from pathlib import Path
        from autosep.taggers import load_tagger
        tagger = load_tagger("panns", model=sys.argv[1], device="cpu")
        import panns_inference  # importing the package itself afterwards has nothing left to fetch
        result = tagger.tag(np.zeros(32000 * 3, dtype=np.float32), 32000)
        assert (Path.home() / "panns_data" / "class_labels_indices.csv").is_file()
        print("OK", result.probs.shape)
    """
    done = _run_guarded(body, home, str(tiny_cnn14_checkpoint))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK (2, 527)" in done.stdout
    csv = home / "panns_data" / "class_labels_indices.csv"
    assert csv.read_text().splitlines()[0] == "index,mid,display_name"
    assert len(csv.read_text().splitlines()) == 528


def test_the_guard_catches_panns_inference_own_wget(tmp_path):
    """Control for the test above: importing panns_inference directly with an empty HOME does try wget."""
    home = tmp_path / "home"
    home.mkdir()
    done = _run_guarded("import panns_inference", home)
    assert done.returncode == 17 and "FETCH ATTEMPTED" in done.stdout


def test_tiny_checkpoint_loads_with_weights_only_and_tags(tiny_cnn14_checkpoint, monkeypatch):
    import panns_inference

    def forbidden(*args, **kwargs):
        raise AssertionError("AudioTagging must not be used: it runs wget")

    monkeypatch.setattr(panns_inference.AudioTagging, "__init__", forbidden)
    loads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(k) or real_load(*a, **k))

    tagger = load_tagger("panns", model=tiny_cnn14_checkpoint, device="cpu")
    assert loads and all(k.get("weights_only") is True for k in loads)
    assert isinstance(tagger.model, panns_inference.models.Cnn14)
    assert tagger.name == "panns" and tagger.default_threshold == pytest.approx(0.25)
    assert len(tagger.labels) == 527 and tagger.labels[0] == "/m/09x0r"
    wave = 0.1 * np.random.default_rng(0).standard_normal((12 * 44100, 2)).astype(np.float32)
    result = tagger.tag(wave, 44100)
    assert result.probs.shape == (11, 527)
    assert result.window_times == [(float(i), float(i + 2)) for i in range(11)]  # 2 s windows every 1 s
    assert np.all((result.probs >= 0) & (result.probs <= 1))
    assert not np.allclose(result.probs.sum(axis=1), 1.0)  # independent sigmoids, not a softmax


def test_recording_shorter_than_cnn14_can_pool_is_tagged(tiny_cnn14_checkpoint):
    """Cnn14 fails on under ~0.3 s ("Output size is too small"): a short recording is one padded window."""
    tagger = load_tagger("panns", model=tiny_cnn14_checkpoint, device="cpu")
    wave = 0.1 * np.random.default_rng(0).standard_normal((4410, 2)).astype(np.float32)  # 0.1 s stereo
    result = tagger.tag(wave, 44100)
    assert result.probs.shape == (1, 527) and np.all(np.isfinite(result.probs))
    assert result.window_times == [(0.0, 0.1)]


def test_a_folder_holding_the_checkpoint_is_accepted(tiny_cnn14_checkpoint):
    tagger = load_tagger("panns", model=tiny_cnn14_checkpoint.parent, device="cpu")
    assert tagger.model_id == str(tiny_cnn14_checkpoint)


def test_default_checkpoint_comes_from_autosep_cache(tiny_cnn14_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOSEP_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ModelNotAvailableError, match="autosep models download panns"):
        load_tagger("panns", device="cpu")
    cached = panns.cnn14_checkpoint_path()
    cached.parent.mkdir(parents=True)
    cached.write_bytes(tiny_cnn14_checkpoint.read_bytes())
    monkeypatch.setattr(panns, "CNN14_SIZE", cached.stat().st_size)  # the tiny file stands in for the real one
    assert load_tagger("panns", device="cpu").model_id == str(cached)


def _serve_checkpoint(served: Path, base: str, source: Path, monkeypatch, md5: str) -> None:
    (served / "Cnn14.pth").write_bytes(source.read_bytes())
    monkeypatch.setattr(panns, "CNN14_URL", f"{base}/Cnn14.pth")
    monkeypatch.setattr(panns, "CNN14_SIZE", source.stat().st_size)
    monkeypatch.setattr(panns, "CNN14_MD5", md5)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")


def test_checkpoint_download_is_verified(tiny_cnn14_checkpoint, tmp_path, monkeypatch, http_folder):
    served, base = http_folder
    monkeypatch.setenv("AUTOSEP_CACHE", str(tmp_path / "cache"))
    good_md5 = hashlib.md5(tiny_cnn14_checkpoint.read_bytes()).hexdigest()

    _serve_checkpoint(served, base, tiny_cnn14_checkpoint, monkeypatch, "0" * 32)
    with pytest.raises(DownloadError, match="MD5"):
        panns.fetch_cnn14()
    assert not panns.cnn14_checkpoint_path().exists()

    _serve_checkpoint(served, base, tiny_cnn14_checkpoint, monkeypatch, good_md5)
    path = panns.fetch_cnn14()
    assert path == panns.cnn14_checkpoint_path() and path.read_bytes() == tiny_cnn14_checkpoint.read_bytes()
    assert not list(path.parent.glob("*.part"))


def test_unreadable_checkpoints_are_clear_errors(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelNotAvailableError, match="garbage.pth"):
        load_tagger("panns", model=garbage, device="cpu")
    other = tmp_path / "other.pth"
    torch.save({"model": {"weight": torch.zeros(1)}}, other)
    with pytest.raises(ModelNotAvailableError, match="not a Cnn14 checkpoint"):
        load_tagger("panns", model=other, device="cpu")
    with pytest.raises(ModelNotAvailableError, match="not found"):
        load_tagger("panns", model=tmp_path / "missing.pth", device="cpu")


def test_a_complete_checkpoint_from_panns_inference_is_reused(tiny_cnn14_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOSEP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(panns, "legacy_checkpoint_path", lambda: tiny_cnn14_checkpoint)
    monkeypatch.setattr(panns, "CNN14_SIZE", tiny_cnn14_checkpoint.stat().st_size)
    monkeypatch.setattr(panns, "CNN14_MD5", hashlib.md5(tiny_cnn14_checkpoint.read_bytes()).hexdigest())
    path = panns.fetch_cnn14()  # offline: succeeds only by copying the existing file
    assert path == panns.cnn14_checkpoint_path() and path.read_bytes() == tiny_cnn14_checkpoint.read_bytes()


def test_the_time_rules_act_on_the_default_taggers_grid(tiny_cnn14_checkpoint):
    """Issue 20: PANNs scores a 10 s recording on a 1 s grid, so min_active and "one sound, one source" act on
    it (on 10 s windows it was one window, where every class is active everywhere)."""
    from autosep.taggers import plan_sources
    from autosep.taggers.audioset import load_ontology

    tagger = load_tagger("panns", model=tiny_cnn14_checkpoint, device="cpu")
    times = tagger.tag(np.zeros(10 * 32000, dtype=np.float32), 32000).window_times
    assert len(times) == 9 and all(b - a == 2.0 for a, b in times) and times[1][0] - times[0][0] == 1.0
    mid = load_ontology().by_name
    dog = np.array([0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])  # barking in the first 4 s
    guitar = np.array([0.1, 0.1, 0.1, 0.1, 0.9, 0.1, 0.9, 0.1, 0.9])
    horn = 0.9 * guitar  # a second name for the guitar's notes
    probs = np.stack([dog, guitar, horn], axis=1)
    labels = [mid("Dog").id, mid("Electric guitar").id, mid("Vehicle horn, car horn, honking").id]
    plan = plan_sources(probs, labels, times, default_threshold=tagger.default_threshold,
                        window_seconds=tagger.window_seconds)
    assert [s.label for s in plan] == ["Dog", "Electric guitar"]  # the horn joined the guitar it co-varies with
    assert plan[0].segments == [(0.0, 4.0)] and plan[0].active_seconds == pytest.approx(3.0)
    kept = plan_sources(probs, labels, times, min_active=3.5, default_threshold=tagger.default_threshold,
                        window_seconds=tagger.window_seconds)
    # counted by hops: the dog 3 s (dropped); the guitar 4 s (its last window, the recording's last, counts whole)
    assert [s.label for s in kept] == ["Electric guitar"]
