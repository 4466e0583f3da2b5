"""``autosep web [--host 127.0.0.1] [--port 7860] [--share] [main command's model options]``: start the app.

The main command's tagging and separation options (``--model``, ``--tagger``, ``--device``, ``--steps``...) are
the page's defaults; the models are loaded once, before the server starts. Gradio is imported only here, and a
missing one is a clear message (exit 1). Exit codes: 0 stopped, 1 could not start, 2 usage error.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

_EPILOG = """\
examples:
  autosep web                                   http://127.0.0.1:7860 with the default models
  autosep web --port 8080 --steps 25 --device cuda
  autosep web --host 0.0.0.0 --max-duration 1800   reachable from the network; recordings up to 30 minutes

needs the web extra: pip install "autosep[web]"
"""


def build_parser() -> argparse.ArgumentParser:
    from ..commands.options import add_separation_arguments, add_tagging_arguments, positive_number
    from ..pipeline.write import BIT_DEPTHS, FORMATS

    parser = argparse.ArgumentParser(prog="autosep web", formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="Start the autosep browser app (Gradio).", epilog=_EPILOG)
    server = parser.add_argument_group("server")
    server.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    server.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    server.add_argument("--share", action="store_true",
                        help="also open a public gradio.live link through Gradio's relay (off by default)")
    server.add_argument("--max-duration", type=positive_number, default=600.0,
                        help="longest recording accepted, in seconds (default 600)")
    server.add_argument("--max-upload-mb", type=positive_number, default=500.0,
                        help="largest upload accepted, in MB (default 500)")
    server.add_argument("--format", choices=tuple(FORMATS), default="wav", help="stem format (wav)")
    server.add_argument("--bit-depth", choices=tuple(BIT_DEPTHS), default=None,
                        help="default: the input's where the format allows")
    server.add_argument("-v", "--verbose", action="store_true", help="more detail in the server log")
    add_tagging_arguments(parser)
    add_separation_arguments(parser)
    return parser


def main(argv: list[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if not 0 <= args.port <= 65535:
        print(f"autosep web: error: --port must be 0-65535, got {args.port}", file=sys.stderr)
        return 2
    from ..logs import setup_logging

    setup_logging(verbose=args.verbose)
    from ..errors import AutosepError

    try:
        options = options_for(args)
    except (AutosepError, ValueError) as exc:
        print(f"autosep web: error: {exc}", file=sys.stderr)
        return 2
    try:
        import gradio  # noqa: F401  (only to say clearly when the extra is missing)
    except ImportError:
        print('autosep web: error: the web app needs Gradio: pip install "autosep[web]"', file=sys.stderr)
        return 1
    from .engine import WebConfig

    config = WebConfig(options, max_duration_s=args.max_duration, max_upload_mb=args.max_upload_mb)
    try:
        server = start(config, host=args.host, port=args.port, share=args.share, block=True,
                       say=lambda text: print(f"autosep web: {text}", file=sys.stderr, flush=True))
    except AutosepError as exc:
        print(f"autosep web: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the port is taken, the address is not ours...
        print(f"autosep web: error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}; "
              "choose another --port", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("autosep web: stopped", file=sys.stderr)
        return 0
    server.close()
    return 0


def options_for(args: argparse.Namespace):
    """The page's defaults: the main command's options as parsed here (no inputs, output per session)."""
    from ..commands.options import options_from_args

    args.sources, args.dry_run, args.out, args.overwrite = None, False, "separated", True
    args.keep = args.remove = None
    args.drop_unconfirmed, args.rounds = False, 1  # the stem check needs the whole-file pipeline, not the page
    options = options_from_args(args)
    options.settings()  # every option checked once, before any model loads
    return options


class Server:
    """A running app: its URL, and :meth:`close` to stop it and remove every session's files."""

    def __init__(self, app, url: str, root: Path):
        self.app, self.url, self.root = app, url, root

    def close(self) -> None:
        try:
            self.app.close()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start(config, host: str = "127.0.0.1", port: int = 7860, share: bool = False, block: bool = False,
          say=lambda text: None, engine=None) -> Server:
    """Load the models (unless ``engine`` is given), build the page and serve it.

    ``block=False`` returns once the server listens (tests); ``block=True`` serves until Ctrl-C. Everything
    the app writes, Gradio's upload cache included, lives in one temporary folder removed on close.
    """
    root = Path(tempfile.mkdtemp(prefix="autosep-web-"))
    # Gradio reads these when it is imported: no telemetry or version check, uploads kept in our folder.
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["GRADIO_TEMP_DIR"] = str(root / "gradio")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        from .app import build_app
        from .engine import Engine

        if engine is None:
            say(f"loading the models (tagger {config.options.tagger}, separator {config.options.model})...")
            engine = Engine.load(config, report=lambda fraction, text: say(text))
        app = build_app(engine, root / "sessions")
        app.queue(default_concurrency_limit=1, max_size=64)
        app.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=not block,
                   max_file_size=f"{config.max_upload_mb:g}mb", ssr_mode=False, quiet=not block, show_error=False,
                   inbrowser=False, enable_monitoring=False, pwa=False, mcp_server=False, footer_links=["api"])
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return Server(app, app.local_url, root)

