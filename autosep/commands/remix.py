"""``autosep remix OUTPUT_FOLDER --gain "NAME=-6dB" ... [-o mix.wav]``: mix a result folder's stems back with a
gain per stem (dB or ``-inf``), at the stems' rate, channels and bit depth.

Exit codes: 0 written; 1 the folder is not a finished result or the file could not be written; 2 usage error
(a bad gain, or a name the folder has no stem for: the message lists the valid names).
"""

from __future__ import annotations

import argparse
import sys

_EPILOG = """\
examples:
  autosep remix separated/mix --gain "Dog=-inf"                    the recording without the dog: separated/mix/remix.wav
  autosep remix separated/mix --gain "residual=-6dB" -o quieter.flac
  autosep remix separated/mix --gain "speech=+3" --gain "music=-inf" -o talk.wav
  autosep remix separated/clip --gain "Dog=-inf" --video-out      also separated/clip/remix.mp4 (for clip.mp4)

names: as in manifest.json ("Dog", "residual") or the stem file names without extension ("dog"); any case
exit codes: 0 written, 1 not a result folder / cannot write, 2 usage error (bad gain, unknown name)
"""


def _gain(text: str) -> tuple[str, float]:
    from ..pipeline.remix import parse_gain

    try:
        return parse_gain(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autosep remix", formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="Mix a result folder's stems back with a gain per stem.",
                                     epilog=_EPILOG)
    parser.add_argument("folder", metavar="OUTPUT_FOLDER", help="a folder autosep wrote (holds manifest.json)")
    parser.add_argument("-g", "--gain", action="append", type=_gain, default=[], metavar="NAME=GAIN",
                        help='gain for one stem, in dB or -inf (repeatable), e.g. "Dog=-inf" "residual=-6dB"; '
                             "stems not named stay at 0 dB")
    parser.add_argument("-o", "--out", default=None,
                        help="output file; its extension picks the format (default: OUTPUT_FOLDER/remix.<stem format>)")
    parser.add_argument("--bit-depth", choices=("16", "24", "32f"), default=None,
                        help="default: the stems' (the input's), where the format allows")
    parser.add_argument("--video-out", nargs="?", const=True, default=None, metavar="FILE",
                        help="the recording was a video: also write it back with the remix as soundtrack, the "
                             "picture copied untouched (default FILE: the remix's name with the video's extension)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors and warnings")
    return parser


def main(argv: list[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return int(exc.code or 0)
    from pathlib import Path

    from ..errors import AutosepError
    from ..pipeline.remix import REMIX, UnknownStemError, open_result, remix, resolve_gains

    try:
        result = open_result(args.folder)
    except AutosepError as exc:
        print(f"autosep remix: error: {exc}", file=sys.stderr)
        return 1
    gains: dict[str, float] = {}
    try:
        for name, db in args.gain:
            gains[result.find(name).name] = db  # a later --gain for the same stem wins
        resolve_gains(result, gains)
    except UnknownStemError as exc:
        print(f"autosep remix: error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else result.folder / f"{REMIX}{result.stems[0].path.suffix.lower()}"
    try:
        mixed = remix(result, gains, out, bit_depth=args.bit_depth)
    except AutosepError as exc:
        print(f"autosep remix: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"autosep remix: error: {out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    for warning in mixed.warnings:
        print(f"autosep remix: warning: {warning}", file=sys.stderr)
    if args.video_out is not None:
        try:
            video = _write_video(result, out, args.video_out)
        except AutosepError as exc:
            print(f"autosep remix: error: {exc}", file=sys.stderr)
            return 1
        if not args.quiet:
            print(f"autosep remix: {video.path} (video copied, {video.audio_codec} soundtrack)", file=sys.stderr)
    if not args.quiet:
        changed = ", ".join(f"{name} {_format_db(db)}" for name, db in mixed.gains_db.items() if db != 0) or "all 0 dB"
        print(f"autosep remix: {out} ({changed}; {mixed.sample_rate} Hz, {mixed.channels} ch, {mixed.subtype})",
              file=sys.stderr)
    return 0


def _write_video(result, soundtrack, video_out):
    """The result's input video written back with ``soundtrack`` (the remix just written)."""
    from pathlib import Path

    from ..pipeline.remix import RemixError
    from ..pipeline.video_out import remux_with_soundtrack

    source = result.manifest.input_path
    if source is None or not source.is_file():
        raise RemixError(f"{result.folder}: the recording it was made from ({source}) is not there any more; "
                         "the video is read from it")
    out = Path(soundtrack).with_suffix(source.suffix.lower()) if video_out is True else Path(video_out)
    return remux_with_soundtrack(source, soundtrack, out)


def _format_db(db: float) -> str:
    return "-inf dB" if db == float("-inf") else f"{db:+g} dB"
