"""Command line entry point: ``autosep [OPTIONS] INPUT...``, ``autosep tag INPUT...``, ``autosep models``."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "tag":
        from .taggers.command import main as tag_main

        return tag_main(argv[1:])
    print("autosep: separation command not built yet; see the issues", file=sys.stderr)
    return 2
