"""``autosep web`` on the tiny random-weight models: one server per module, driven through Gradio's own Python
client (find sources, edit the list, separate, remix) with every returned file checked.

Offline: the server listens on loopback only, Gradio's analytics and version check are off, and conftest's
network guard fails the test on any other connection.
"""

from __future__ import annotations

import json
import math
import socket
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

gradio = pytest.importorskip("gradio", reason='the web extra is not installed (pip install -e ".[web]")')
gradio_client = pytest.importorskip("gradio_client")

from autosep.cli import main  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_mix(path: Path, seconds: float = 3.0, rate: int = 44100) -> np.ndarray:
    rng = np.random.default_rng(3)
    t = np.arange(int(seconds * rate)) / rate
    mono = 0.25 * np.sin(2 * np.pi * 330 * t) + 0.05 * rng.standard_normal(len(t))
    data = np.stack([mono, 0.8 * mono], axis=1).astype(np.float32)
    sf.write(path, data, rate, subtype="PCM_16")
    return sf.read(path, dtype="float64", always_2d=True)[0]


@pytest.fixture(scope="module")
def web_config(tiny_audioldm2_dir, tiny_cnn14_checkpoint):
    from autosep.pipeline import PipelineOptions
    from autosep.web.engine import WebConfig

    options = PipelineOptions(model=str(tiny_audioldm2_dir), tagger_model=str(tiny_cnn14_checkpoint), steps=1,
                              window=2.56, device="cpu", planner={"threshold": 0.0, "max_sources": 2})
    return WebConfig(options, max_duration_s=20.0, max_upload_mb=5.0)


@pytest.fixture(scope="module")
def server(web_config):
    import torch

    from autosep.web.command import start

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the module's requests run in the server's threads, not the test's
    running = start(web_config, port=free_port())
    yield running
    running.close()
    torch.set_num_threads(threads)
    assert not running.root.exists(), "the server's temporary folder must be removed on close"


@pytest.fixture
def client(server, tmp_path):
    from gradio_client import Client

    return Client(server.url, verbose=False, download_files=str(tmp_path / "downloads"))


def table_rows(value) -> list[list]:
    return value["data"] if isinstance(value, dict) else value


def value_of(output):
    """A component's value, whether the handler returned it plainly or as ``gr.update(value=...)``."""
    return output.get("value") if isinstance(output, dict) and output.get("__type__") == "update" else output


def test_find_edit_separate_remix_through_the_client(server, client, web_config, tmp_path):
    from gradio_client import handle_file

    mix = write_mix(tmp_path / "street recording.wav")
    status, table, tags = client.predict(handle_file(str(tmp_path / "street recording.wav")), None,
                                         api_name="/find")
    rows = table_rows(table)
    assert "street recording.wav" in status and "3.0 s" in status
    assert 1 <= len(rows) <= 2 and all(row[0] is True for row in rows)
    assert all(float(row[4]) > 0 for row in rows)  # active time of each planned source
    assert len(table_rows(tags)) == 10  # raw top tags: class name, AudioSet id, score
    assert all(str(t[1]).startswith("/") for t in table_rows(tags))

    # Edit: leave the second found source out (if any) and add one of our own.
    table, typed = client.predict({"headers": table["headers"], "data": rows}, "dog barking", api_name="/add_source")
    rows = table_rows(table)
    assert rows[-1][1:3] == ["dog barking", "dog barking"] and typed == ""
    if len(rows) == 3:
        rows[1][0] = False
    kept = [row[1] for row in rows if row[0]]

    outputs = client.predict({"headers": table["headers"], "data": rows}, web_config.options.model, "ddpm",
                             "others", "projected", 1, 1.0, 42, api_name="/separate")
    text = json.dumps(outputs)
    assert "stems" in outputs[0]
    values = [value_of(o) for o in outputs]
    files = [v for v in values if isinstance(v, str) and Path(v).is_file()]
    stems = [Path(f) for f in files if f.endswith(".wav")]
    images = [Path(f) for f in files if f.endswith(".png")]
    archives = [Path(f) for f in files if f.endswith(".zip")]
    assert len(stems) == len(kept) + 1, text  # one player per kept source and the residual
    assert [o["label"] for o in outputs[1:len(stems) + 1]] == [*kept, "residual"]
    assert len(images) == len(stems)
    assert all(sf.info(str(s)).samplerate == 44100 and sf.info(str(s)).channels == 2 for s in stems)
    total = sum(sf.read(str(s), dtype="float64", always_2d=True)[0] for s in stems)
    assert np.array_equal(total, mix)  # projected stems add back to the upload exactly
    with zipfile.ZipFile(archives[0]) as archive:
        names = sorted(Path(n).name for n in archive.namelist())
        manifest = json.loads(archive.read(next(n for n in archive.namelist() if n.endswith("manifest.json"))))
    assert "manifest.json" in names and len(names) == len(stems) + 1
    assert manifest["source_mode"] == "edited" and [s["name"] for s in manifest["sources"]] == kept
    assert manifest["top_tags"]
    assert str(server.root) not in json.dumps(outputs[0])  # no server path in the page's messages

    # Remix: all 0 dB is the upload itself; the first source off removes exactly its stem.
    gains = [0.0] * 13
    status, player, download = client.predict(*gains, api_name="/remix")
    assert "input itself" in status
    assert np.array_equal(sf.read(download, dtype="float64", always_2d=True)[0], mix)
    gains[0] = -60.0
    status, player, download = client.predict(*gains, api_name="/remix")
    first = sf.read(str(stems[0]), dtype="float64", always_2d=True)[0]
    assert np.allclose(sf.read(download, dtype="float64", always_2d=True)[0], mix - first, atol=1e-4)
    assert f"{kept[0]} off" in status
