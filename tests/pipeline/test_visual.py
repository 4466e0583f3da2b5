"""Video-aware discovery and --describe on a real rendered video (ffmpeg test pattern + soundtrack), with tiny
random-weight CLIP and Idefics3 (SmolVLM's architecture) models loaded through the same from_pretrained path
as a download."""

from __future__ import annotations

import json

import numpy as np
import pytest

from autosep.commands.tag import main as tag_main
from autosep.errors import ModelNotAvailableError
from autosep.pipeline.batch import run_batch
from autosep.pipeline.pipeline import Pipeline
from autosep.pipeline.settings import PipelineOptions
from autosep.video.frames import sample_frames
from autosep.video.onscreen import VisualScorer, seen_spans
from test_pipeline_flow import BandSeparatorDouble
from tiny_models.video import VLM_WORD, render_clip

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class FixedTaggerDouble:
    """Test double for a tagger on the real windowed ``Tagger`` base: fixed scores per class, so which classes
    are heard loudly (Dog), faintly (Speech) or not at all (Cat) is known."""

    def __new__(cls, scores=(("Dog", 0.9), ("Speech", 0.3), ("Cat", 0.0))):
        from autosep.taggers.base import Tagger

        class _Double(Tagger):
            name, model_id, sample_rate = "fixed-tagger-test-double", "double", 16000
            labels = [label for label, _ in scores]

            def score_windows(self, windows):
                return np.asarray([[score for _, score in scores] for _ in windows], np.float32)

        return _Double()


@pytest.fixture(scope="module")
def clip_mp4(tmp_path_factory):
    return render_clip(tmp_path_factory.mktemp("video") / "clip.mp4", "aac", seconds=3.0)


def _discover(tmp_path, clip, model, **options):
    options.setdefault("planner", {"threshold": 0.5, "hierarchy": "none", "min_active": 0.0, "max_sources": 4})
    settings = PipelineOptions(visual_model=str(model), steps=2, window=1.0, out=str(tmp_path / "out"),
                               dry_run=options.pop("dry_run", False), **options).settings()
    pipeline = Pipeline(settings, tagger=FixedTaggerDouble(), separator=BandSeparatorDouble())
    return run_batch([str(clip)], settings, pipeline=pipeline).results[0]


def test_frames_are_sampled_about_once_a_second_and_scaled_down(clip_mp4):
    frames = sample_frames(clip_mp4, every_s=1.0, max_side=48)
    assert [f.time_s for f in frames] == [0.0, 1.0, 2.0]
    assert all(max(f.image.size) == 48 and f.image.mode == "RGB" for f in frames)  # 96x64 -> 48x32


def test_seen_spans_join_neighbouring_frames():
    assert seen_spans([0, 1, 2, 3, 4], [0.9, 0.8, 0.1, 0.7, 0.2], 0.5, 1.0, 4.2) == [(0.0, 1.5), (2.5, 3.5)]


def test_manifest_records_on_screen_spans_and_scores_per_source(tmp_path, clip_mp4, tiny_clip_dir):
    result = _discover(tmp_path, clip_mp4, tiny_clip_dir, visual_threshold=1e-6)
    assert result.status == "done", result.message
    visual = json.loads((result.output / "manifest.json").read_text())["visual"]
    assert visual["frames"] == 3 and visual["model"] == str(tiny_clip_dir)
    by_source = {entry["source"]: entry for entry in visual["sources"]}
    assert set(by_source) == {s.label for s in result.plan}
    for entry in by_source.values():
        assert [t for t, _ in entry["scores"]] == [0.0, 1.0, 2.0] and all(0 < s < 1 for _, s in entry["scores"])
        assert entry["spans"] == [[0.0, 2.5]]  # every frame passes 1e-6: seen from the start to the last frame


def test_the_picture_confirms_a_faint_sound_but_never_invents_one(tmp_path, clip_mp4, tiny_clip_dir):
    seen = _discover(tmp_path / "a", clip_mp4, tiny_clip_dir, visual_threshold=1e-6, dry_run=True)
    labels = [s.label for s in seen.plan]
    assert labels[0] == "Dog" and "Speech" in labels  # Speech at 0.3 < 0.5: kept because it is on screen
    assert "Cat" not in labels  # never heard: no picture makes it a source
    assert "seen on screen" in next(s for s in seen.plan if s.label == "Speech").why
    unseen = _discover(tmp_path / "b", clip_mp4, tiny_clip_dir, visual_threshold=0.99, dry_run=True)
    assert [s.label for s in unseen.plan] == ["Dog"]
    blind = _discover(tmp_path / "c", clip_mp4, "/no/such/model", visual=False, dry_run=True)
    assert [s.label for s in blind.plan] == ["Dog"]  # --no-visual: the model is never loaded


def test_describe_turns_the_vlm_answer_into_the_sources_prompt(tmp_path, clip_mp4, tiny_clip_dir, tiny_vlm_dir):
    result = _discover(tmp_path, clip_mp4, tiny_clip_dir, describe=["the test pattern"],
                       describe_model=str(tiny_vlm_dir))
    assert result.status == "done", result.message
    manifest = json.loads((result.output / "manifest.json").read_text())
    described = manifest["visual"]["describe"]["sources"][0]
    assert described["description"] == "the test pattern"
    assert described["answer"] == " ".join([VLM_WORD] * 8)  # the tiny model's known answer, cleaned to 8 words
    assert described["frames_shown"] == [0.0, 1.0, 2.0]
    entry = next(e for e in manifest["sources"] if e["name"] == "the test pattern")
    assert entry["c_rev"] == described["answer"]  # the answer is what the separator was prompted with
    assert manifest["settings"]["describe"] == ["the test pattern"]


def test_tag_shows_an_on_screen_column_for_a_video(clip_mp4, tiny_clip_dir, tiny_cnn14_checkpoint, monkeypatch,
                                                   capsys):
    import autosep.taggers.panns as panns
    import hashlib

    monkeypatch.setattr(panns, "legacy_checkpoint_path", lambda: tiny_cnn14_checkpoint)
    monkeypatch.setattr(panns, "CNN14_SIZE", tiny_cnn14_checkpoint.stat().st_size)
    monkeypatch.setattr(panns, "CNN14_MD5", hashlib.md5(tiny_cnn14_checkpoint.read_bytes()).hexdigest())
    code = tag_main([str(clip_mp4), "--visual-model", str(tiny_clip_dir), "--visual-threshold", "1e-6",
                     "--threshold", "0.0", "--max-sources", "2", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)["files"][0]
    assert report["sources"] and all(s["on_screen"]["spans"] == [[0.0, 2.5]] for s in report["sources"])
    assert tag_main([str(clip_mp4), "--visual-model", str(tiny_clip_dir), "--threshold", "0.0",
                     "--max-sources", "2"]) == 0
    assert "on screen" in capsys.readouterr().out


def test_a_visual_model_that_is_not_there_fails_with_what_to_do(tmp_path):
    with pytest.raises(ModelNotAvailableError, match="--no-visual") as error:
        VisualScorer.from_pretrained(str(tmp_path / "missing-model"))
    assert "autosep models download clip" in str(error.value)


def test_a_describe_model_that_is_not_there_fails_with_what_to_do(tmp_path):
    from autosep.video.describe import Describer

    with pytest.raises(ModelNotAvailableError, match="-s PROMPT instead of --describe") as error:
        Describer.from_pretrained(str(tmp_path / "missing-model"))
    message = str(error.value)
    assert message.startswith("describe model ") and "is not a model folder" not in message
    assert "autosep models download smolvlm" in message and "--describe-model" in message


def test_the_command_on_a_rendered_video_end_to_end(tmp_path, tiny_audioldm2_dir, tiny_cnn14_checkpoint,
                                                    tiny_clip_dir, tiny_vlm_dir, capsys):
    """``autosep clip.mkv`` on the tiny models: on-screen spans per source, a described source prompted with the
    VLM's answer, stems adding up to the soundtrack, and the video written back without that source."""
    from autosep.cli import main
    from autosep.pipeline.recording import open_audio
    from test_video_out import soundtrack, video_packets

    import soundfile as sf

    clip = render_clip(tmp_path / "clip.mkv", "flac")  # lossless: the sums and the soundtrack can be exact
    out = tmp_path / "out"
    code = main([str(clip), "-o", str(out), "--model", str(tiny_audioldm2_dir), "--tagger-model",
                 str(tiny_cnn14_checkpoint), "--steps", "1", "--window", "2.56", "--device", "cpu",
                 "--threshold", "0.0", "--max-sources", "2", "--visual-model", str(tiny_clip_dir),
                 "--visual-threshold", "1e-6", "--describe", "the test pattern", "--describe-model",
                 str(tiny_vlm_dir), "--remove", "the test pattern", "--video-out", "-q"])
    assert code == 0, capsys.readouterr().err
    folder = out / "clip"
    manifest = json.loads((folder / "manifest.json").read_text())
    on_screen = {entry["source"]: entry for entry in manifest["visual"]["sources"]}
    names = [entry["name"] for entry in manifest["sources"]]
    assert "the test pattern" in names and set(on_screen) == set(names)
    assert all(entry["spans"] == [[0.0, 1.5]] for entry in on_screen.values())  # frames at 0 and 1 s, each +-0.5 s
    described = next(e for e in manifest["sources"] if e["name"] == "the test pattern")
    assert described["c_rev"] == " ".join([VLM_WORD] * 8)
    with open_audio(clip) as recording:
        recording.scan(1 << 16)
        original = recording.read(0, recording.frames).astype(np.float64)
    stems = {p.stem: sf.read(p, dtype="float64", always_2d=True)[0] for p in folder.glob("*.wav") if p.stem != "remix"}
    np.testing.assert_array_equal(sum(stems.values()), original)
    assert video_packets(folder / "remix.mkv") == video_packets(clip)
    remix = sf.read(folder / "remix.wav", dtype="float32", always_2d=True)[0]
    np.testing.assert_array_equal(soundtrack(folder / "remix.mkv"), remix)
    np.testing.assert_array_equal(remix.astype(np.float64), original - stems["the_test_pattern"])


def test_describe_works_beside_given_prompts_and_warns_on_audio(tmp_path, clip_mp4, tiny_vlm_dir):
    import soundfile as sf

    def plan(path):
        settings = PipelineOptions(sources=["low hum"], visual=False, describe=["the test pattern"],
                                   describe_model=str(tiny_vlm_dir), dry_run=True, out=str(tmp_path / path.stem)
                                   ).settings()
        pipeline = Pipeline(settings, separator=BandSeparatorDouble())
        return run_batch([str(path)], settings, pipeline=pipeline).results[0]

    video = plan(clip_mp4)
    assert [(s.label, s.prompt) for s in video.plan] == [("low hum", "low hum"),
                                                         ("the test pattern", " ".join([VLM_WORD] * 8))]
    audio = tmp_path / "mix.wav"
    sf.write(audio, 0.3 * np.sin(2 * np.pi * 300 * np.arange(16000) / 16000), 16000)
    result = plan(audio)
    assert [s.label for s in result.plan] == ["low hum"]
    assert any("nothing to --describe" in w for w in result.warnings)


def test_a_visual_model_loaded_by_a_sharing_copy_is_loaded_for_all(monkeypatch):
    """An evaluation's recordings and a server's requests each get a copy (sharing_models): the first video
    loads the model, and neither the original nor a later copy loads it again."""
    from autosep.pipeline.progress import Progress
    from autosep.pipeline.visual import VisualEvidence
    from autosep.video.settings import VisualSettings

    loads = []
    monkeypatch.setattr(VisualScorer, "from_pretrained", classmethod(lambda cls, model, device: loads.append(model)
                                                                     or object()))
    first = VisualEvidence(VisualSettings(), "cpu", Progress())
    copy = first.sharing_models(VisualSettings(), Progress())
    loaded = copy.scorer()
    assert first.scorer() is loaded and first.sharing_models(VisualSettings(), Progress()).scorer() is loaded
    assert len(loads) == 1
