"""The video written back (``--video-out``): the input's container with its video stream(s) copied packet for
packet (PyAV remux, the picture never re-encoded) and a new soundtrack: the remix, or one chosen stem.

The soundtrack is encoded with the input's own audio codec where the container can hold it (aac stays aac,
flac stays flac, pcm stays pcm), else with the container's default, at the soundtrack file's rate and channels.
Lossless codecs (flac, alac, pcm) carry the remix sample for sample (16/24-bit remixes); aac is lossy. The
input's other audio tracks, subtitles and data streams are not carried over. Audio is interleaved with the
video as it is muxed, so memory stays flat, and the file is written to a temporary name and renamed when whole.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import AutosepError
from ..video.frames import has_video_stream, video_streams
from .naming import REMIX
from .write import temporary_name

AUDIO_BLOCK_S = 0.5  # the soundtrack is encoded this far ahead of the video packet being muxed
_LAYOUTS = {1: "mono", 2: "stereo"}


class VideoOutError(AutosepError):
    """The video cannot be written back (no video stream, a container PyAV cannot write...)."""


@dataclass
class VideoReport:
    path: Path
    soundtrack: str  # "remix" or the stem's name
    audio_codec: str
    video_streams: int
    video_packets: int

    def to_dict(self) -> dict:
        return {"file": self.path.name, "soundtrack": self.soundtrack, "audio_codec": self.audio_codec,
                "video_streams": self.video_streams, "video_packets": self.video_packets}


def remux_with_soundtrack(video: str | os.PathLike, soundtrack: str | os.PathLike, out: str | os.PathLike,
                          label: str = "remix") -> VideoReport:
    """Write ``out``: ``video``'s video streams copied untouched and ``soundtrack`` (an audio file soundfile
    reads) as its only audio track. Raises VideoOutError naming the file and what to do."""
    import av

    video, soundtrack, out = Path(video), Path(soundtrack), Path(out)
    if out.resolve() in (video.resolve(), soundtrack.resolve()):
        raise VideoOutError(f"{out}: would overwrite the {'video' if out.resolve() == video.resolve() else 'soundtrack'}"
                            " it is made from; choose another output name")
    partial = temporary_name(out)
    temporary = partial.with_name(partial.name + out.suffix)  # the extension tells FFmpeg the muxer
    try:
        source = av.open(str(video))
    except (av.FFmpegError, OSError) as exc:
        raise VideoOutError(f"{video}: cannot open the video to write it back ({exc}); is the input still there?"
                            ) from None
    try:
        streams = video_streams(source)
        if not streams:
            raise VideoOutError(f"{video}: has no video stream, so there is no video to write back; "
                                "leave out --video-out for audio inputs")
        with sf.SoundFile(str(soundtrack)) as audio:
            try:
                packets, codec = _remux(source, streams, audio, temporary)
            except BaseException:
                temporary.unlink(missing_ok=True)
                raise
    except av.FFmpegError as exc:
        raise VideoOutError(f"{out}: cannot write the video ({exc}); try another container, e.g. .mkv") from None
    finally:
        source.close()
    os.replace(temporary, out)
    return VideoReport(out, label, codec, len(streams), packets)


def _remux(source, streams: list, audio: sf.SoundFile, temporary: Path) -> tuple[int, str]:
    """Copy ``streams``' packets into ``temporary`` with ``audio`` encoded beside them, in time order."""
    import av

    with av.open(str(temporary), "w") as target:
        copies = {stream.index: target.add_stream_from_template(stream) for stream in streams}
        encoder = _audio_stream(target, source, audio)
        track = _Soundtrack(audio, encoder, _audio_start(source))
        packets = 0
        for packet in source.demux(*streams):
            if packet.size == 0:  # the demuxer's end-of-stream marker
                continue
            if packet.pts is not None and packet.time_base is not None:
                track.encode_until(float(packet.pts * packet.time_base) + AUDIO_BLOCK_S, target)
            packet.stream = copies[packet.stream.index]
            target.mux(packet)
            packets += 1
        track.encode_until(None, target)
        return packets, encoder.codec_context.name


def _audio_stream(target, source, audio: sf.SoundFile):
    """The soundtrack's stream: the input's audio codec where this container holds it and FFmpeg can encode it
    (the codec's canonical name: a decoder such as "mp3float" encodes as "mp3"), else the container's default."""
    import av

    original = source.streams.audio[0] if source.streams.audio else None
    wanted = original.codec_context.codec.canonical_name if original is not None else None
    codec = wanted if wanted in (target.supported_codecs or set()) and _encodes(wanted) else target.default_audio_codec
    if codec in (None, "none"):
        raise VideoOutError(f"{target.name}: this container holds no audio; write the video as .mkv or .mp4")
    rate = int(audio.samplerate)
    rates = av.Codec(codec, "w").audio_rates
    if rates and rate not in rates:  # e.g. opus: 48 kHz only; the encoder resamples
        rate = min(rates, key=lambda r: (r < rate, abs(r - rate)))
    stream = target.add_stream(codec, rate=rate, layout=_LAYOUTS.get(audio.channels, audio.channels))
    if original is not None and original.bit_rate and codec == wanted:
        stream.bit_rate = original.bit_rate  # a lossy codec keeps the input's bit rate
    return stream


def _encodes(codec: str) -> bool:
    import av

    try:
        av.Codec(codec, "w")
    except (av.FFmpegError, ValueError):
        return False
    return True


def _audio_start(source) -> float:
    """Where the input's soundtrack starts on the container's clock, in seconds (0 when unknown)."""
    if not source.streams.audio:
        return 0.0
    stream = source.streams.audio[0]
    if stream.start_time is None or stream.time_base is None:
        return 0.0
    return max(0.0, float(stream.start_time * stream.time_base))


class _Soundtrack:
    """Reads the soundtrack file block by block and encodes it as the muxing reaches each time."""

    def __init__(self, audio: sf.SoundFile, stream, start_s: float):
        self.audio, self.stream = audio, stream
        self.rate = int(audio.samplerate)
        self.offset = round(start_s * self.rate)
        self.layout = _LAYOUTS.get(audio.channels, audio.channels)
        self.done = 0

    def encode_until(self, seconds: float | None, target) -> None:
        """Encode up to ``seconds`` of the soundtrack (None: all of it, then flush the encoder)."""
        import av

        last = self.audio.frames if seconds is None else min(self.audio.frames, round(seconds * self.rate))
        while self.done < last:
            block = self.audio.read(min(last - self.done, self.rate), dtype="float32", always_2d=True)
            if not len(block):
                break
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block.T), format="fltp", layout=self.layout)
            frame.sample_rate, frame.time_base = self.rate, Fraction(1, self.rate)
            frame.pts = self.offset + self.done
            self.done += len(block)
            target.mux(self.stream.encode(frame))
        if seconds is None:
            target.mux(self.stream.encode(None))


def write_video_out(result, output, progress) -> None:
    """``--video-out``: write ``result``'s video input back beside its stems, as ``remix<ext>`` with the remix as
    soundtrack or ``<stem file name><ext>`` with one stem, and record it in the manifest (``video_out``). An
    input with no video stream gets a warning, not a failure."""
    if output.video_out is None or not result.files or result.output is None:
        return
    from .manifest import VideoOutRecord
    from .remix import open_result

    if not has_video_stream(result.input):
        warning = f"{result.input}: has no video stream; --video-out wrote no video"
        progress.warn(warning)
        result.warnings.append(warning)
        return
    stems = open_result(result.output)
    if output.video_out == REMIX:
        remix = stems.manifest.remix_file
        if remix is None:  # OutputSettings requires --keep/--remove with it, so write_remix has run
            raise VideoOutError(f"{result.output}: no remix was written for --video-out")
        soundtrack, label = remix, REMIX
    else:
        stem = stems.find(output.video_out)
        soundtrack, label = stem.path, stem.name
    out = result.output / f"{soundtrack.stem}{result.input.suffix.lower()}"
    progress.stage(f"writing {out.name}")
    report = remux_with_soundtrack(result.input, soundtrack, out, label)
    manifest = stems.manifest
    manifest.video_out = VideoOutRecord.from_dict(report.to_dict())
    manifest.write()
    result.manifest = manifest
