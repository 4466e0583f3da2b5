"""Real audio rendered offline by Debian's tools, for tests and benchmarks: General MIDI instruments through
``fluidsynth`` with the ``fluid-soundfont-gm`` soundfont, and speech through ``espeak-ng``.

Nothing is committed: each caller renders what it needs into a temporary folder. ``missing_tools()`` names what
is not installed, so a test can skip saying what to install.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")  # Debian's fluid-soundfont-gm
INSTALL_HINT = "apt-get install fluidsynth fluid-soundfont-gm espeak-ng"
TICKS_PER_SECOND = 960  # 480 ticks per beat at 120 bpm

Note = tuple[float, float, int, int]  # (start s, length s, pitch, velocity)


def missing_tools() -> list[str]:
    missing = [name for name in ("fluidsynth", "espeak-ng") if shutil.which(name) is None]
    if not SOUNDFONT.is_file():
        missing.append(f"fluid-soundfont-gm ({SOUNDFONT})")
    return missing


def _varlen(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    return bytes(reversed(out))


def write_midi(path: Path, parts: list[tuple[int, int, list[Note]]]) -> None:
    """A one-track standard MIDI file at 120 bpm; ``parts`` are (program, channel, notes). Channel 9 is General
    MIDI percussion (its program is ignored)."""
    events: list[tuple[int, bytes]] = []
    for program, channel, notes in parts:
        if channel != 9:
            events.append((0, bytes([0xC0 | channel, program])))
        for start, length, pitch, velocity in notes:
            events.append((round(start * TICKS_PER_SECOND), bytes([0x90 | channel, pitch, velocity])))
            events.append((round((start + length) * TICKS_PER_SECOND), bytes([0x80 | channel, pitch, 0])))
    events.sort(key=lambda e: (e[0], e[1][0] & 0xF0 == 0x90))  # at one instant: note-offs before note-ons
    track, now = b"", 0
    for at, data in events:
        track += _varlen(at - now) + data
        now = at
    track += b"\x00\xff\x2f\x00"  # end of track
    path.write_bytes(b"MThd" + struct.pack(">IHHH", 6, 0, 1, 480) + b"MTrk" + struct.pack(">I", len(track)) + track)


def render_midi(parts: list[tuple[int, int, list[Note]]], wav: Path, rate: int, gain: float = 0.8) -> Path:
    """``parts`` (see :func:`write_midi`) rendered to ``wav`` at ``rate`` by fluidsynth."""
    midi = wav.with_suffix(".mid")
    write_midi(midi, parts)
    subprocess.run(["fluidsynth", "-ni", "-q", "-g", str(gain), "-r", str(rate), "-F", str(wav), str(SOUNDFONT),
                    str(midi)], check=True, capture_output=True, timeout=300)
    return wav


def speak(text: str, wav: Path, voice: str | None = None, words_per_minute: int | None = None) -> Path:
    """``text`` spoken by espeak-ng into ``wav`` (its own rate, 22.05 kHz mono)."""
    command = ["espeak-ng", "-w", str(wav)]
    if voice:
        command += ["-v", voice]
    if words_per_minute:
        command += ["-s", str(words_per_minute)]
    subprocess.run([*command, text], check=True, capture_output=True, timeout=300)
    return wav
