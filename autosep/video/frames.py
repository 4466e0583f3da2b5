"""Frames of a video input, sampled with PyAV about once per ``every_s`` seconds and scaled down."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import AutosepError

FRAME_EVERY_S = 1.0
MAX_SIDE = 384  # pixels: CLIP/SigLIP/SmolVLM look at 224-512 px anyway, and small frames keep memory flat
MAX_FRAMES = 600  # a longer video is sampled more sparsely (10 minutes at 1 per second)


class VideoFrameError(AutosepError):
    """The video's frames cannot be read."""


@dataclass
class Frame:
    time_s: float  # on the video's clock, from its first frame
    image: "object"  # a PIL.Image.Image, RGB


def video_streams(container) -> list:
    """The real video streams of an open PyAV container (an audio file's cover picture is not one)."""
    import av

    flag = getattr(av.stream.Disposition, "attached_pic", None)
    return [s for s in container.streams.video if flag is None or not (s.disposition & flag)]


def has_video_stream(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a real video stream (False for audio files and anything PyAV cannot open)."""
    import av

    try:
        with av.open(str(path)) as container:
            return bool(video_streams(container))
    except (av.FFmpegError, OSError, ValueError):
        return False


def sample_frames(path: str | os.PathLike, every_s: float = FRAME_EVERY_S, max_side: int = MAX_SIDE,
                  max_frames: int = MAX_FRAMES) -> list[Frame]:
    """One frame per ``every_s`` seconds (the first at or after each mark), at most ``max_side`` pixels on the
    longer side; ``[]`` for a file without a video stream. Raises VideoFrameError naming the file."""
    import av

    path = Path(path)
    try:
        with av.open(str(path)) as container:
            streams = video_streams(container)
            if not streams:
                return []
            stream = streams[0]
            stream.thread_type = "AUTO"
            duration = _duration_s(container, stream)
            if duration and duration / every_s > max_frames:
                every_s = duration / max_frames
            return _decode_marks(container, stream, every_s, max_side)
    except av.FFmpegError as exc:
        raise VideoFrameError(f"{path}: cannot read the video's frames ({exc}); re-export the video, or pass "
                              "--no-visual to use its soundtrack only") from None


def _duration_s(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return container.duration / 1_000_000 if container.duration else None


def _decode_marks(container, stream, every_s: float, max_side: int) -> list[Frame]:
    frames: list[Frame] = []
    start = None
    next_mark = 0.0
    for frame in container.decode(stream):
        if frame.time is None:
            continue
        start = frame.time if start is None else start
        at = frame.time - start
        if at + 1e-6 < next_mark:
            continue
        scale = min(1.0, max_side / max(frame.width, frame.height))
        width, height = max(2, round(frame.width * scale)), max(2, round(frame.height * scale))
        frames.append(Frame(round(at, 3), frame.to_image(width=width, height=height)))
        while next_mark <= at + 1e-6:
            next_mark += every_s
    return frames
