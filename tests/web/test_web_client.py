"""``autosep web`` on the tiny random-weight models: one server per module, driven through Gradio's own Python
client (find sources, edit the list, separate, remix) with every returned file checked.

Offline: the server listens on loopback only, Gradio's analytics and version check are off, and conftest's
network guard fails the test on any other connection.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("gradio_client", reason='the web extra is not installed (pip install -e ".[web]")')


@pytest.fixture
def client(server, tmp_path):
    from gradio_client import Client

    return Client(server.url, verbose=False, download_files=str(tmp_path / "downloads"))


def table_rows(value) -> list[list]:
    return value["data"] if isinstance(value, dict) else value


def value_of(output):
    """A component's value, whether the handler returned it plainly or as ``gr.update(value=...)``."""
    return output.get("value") if isinstance(output, dict) and output.get("__type__") == "update" else output


def test_find_edit_separate_remix_through_the_client(server, client, web_config, make_mix, tmp_path):
    from gradio_client import handle_file

    mix = make_mix(tmp_path / "street recording.wav")
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
    status, player, download = (value_of(o) for o in client.predict(*gains, api_name="/remix"))
    assert "input itself" in status and player == download
    assert np.array_equal(sf.read(download, dtype="float64", always_2d=True)[0], mix)
    gains[0] = -60.0
    status, player, download = (value_of(o) for o in client.predict(*gains, api_name="/remix"))
    first = sf.read(str(stems[0]), dtype="float64", always_2d=True)[0]
    assert np.allclose(sf.read(download, dtype="float64", always_2d=True)[0], mix - first, atol=1e-4)
    assert f"{kept[0]} off" in status


def test_errors_reach_the_page_as_the_cli_messages(server, client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    bad = tmp_path / "notes.wav"
    bad.write_text("not audio at all")
    with pytest.raises(AppError) as caught:
        client.predict(handle_file(str(bad)), None, api_name="/find")
    message = str(caught.value)
    assert "error: notes.wav: not a readable audio or video file" in message
    assert "Traceback" not in message and str(server.root) not in message  # the upload's name, not a server path
    with pytest.raises(AppError, match="no recording yet; upload a file or record one first"):
        client.predict(None, None, api_name="/find")
    with pytest.raises(AppError, match="nothing to remix yet"):
        client.predict(*[0.0] * 13, api_name="/remix")


def test_a_recording_over_the_length_limit_is_refused_with_the_limit(server, client, make_mix, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    make_mix(tmp_path / "long.wav", seconds=21.0, rate=8000)  # the module's server accepts 20 s
    with pytest.raises(AppError, match=r"long\.wav: 0:21 long; this server accepts recordings up to 0:20"):
        client.predict(handle_file(str(tmp_path / "long.wav")), None, api_name="/find")


def test_only_the_app_s_own_results_are_served(server, client, make_mix, tmp_path):
    import urllib.error
    import urllib.request

    from gradio_client import handle_file

    make_mix(tmp_path / "mine.wav")
    client.predict(handle_file(str(tmp_path / "mine.wav")), None, api_name="/find")
    uploads = sorted((server.root / "sessions").glob("session-*/upload-*/mine.wav"))
    assert uploads, "the upload is copied into its session's folder"
    for private in (Path(__file__), uploads[-1]):
        url = f"{server.url}gradio_api/file={private}"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=10)
        assert refused.value.code in (403, 404)


def write_video(path: Path, seconds: float = 2.0, rate: int = 48000) -> None:
    """An mp4 with a small video track and an AAC soundtrack (what a phone or screen recorder writes)."""
    import av

    t = np.arange(int(seconds * rate)) / rate
    audio = np.ascontiguousarray(np.stack([0.3 * np.sin(2 * np.pi * 440 * t)] * 2).astype(np.float32))
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        sound = container.add_stream("aac", rate=rate, layout="stereo")
        for index in range(int(seconds * 10)):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), index * 10 % 255, np.uint8), format="rgb24")
            for packet in video.encode(frame):
                container.mux(packet)
        chunk = av.AudioFrame.from_ndarray(audio, format="fltp", layout="stereo")
        chunk.sample_rate = rate
        for packet in sound.encode(chunk):
            container.mux(packet)
        for stream in (video, sound):
            for packet in stream.encode(None):
                container.mux(packet)


def test_a_video_s_soundtrack_is_used(server, client, tmp_path):
    from gradio_client import handle_file

    write_video(tmp_path / "holiday clip.mp4")
    status, table, _ = client.predict(handle_file(str(tmp_path / "holiday clip.mp4")), None, api_name="/find")
    assert "holiday clip.mp4" in status and "2.0 s" in status
    rows = table_rows(table)  # threshold 0 in this module: the planned sources are active all along
    assert 1 <= len(rows) <= 2 and all(float(row[4]) == pytest.approx(2.0, abs=0.05) for row in rows), rows


def test_an_upload_over_the_size_limit_is_refused_with_the_limit(server, tmp_path):
    import httpx

    big = b"RIFF" + bytes(6 * 1024 * 1024)  # the module's server takes 5 MB
    response = httpx.post(f"{server.url}gradio_api/upload", files={"files": ("big.wav", big, "audio/wav")},
                          timeout=60, trust_env=False)
    assert response.status_code == 413
    assert "maximum allowed size of 5242880 bytes" in response.text
    assert not list((server.root / "gradio").rglob("big.wav"))  # nothing of it kept
