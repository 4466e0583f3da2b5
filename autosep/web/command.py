"""``autosep web [--host 127.0.0.1] [--port 7860] [--model M]... [--auth USER:PASSWORD]...``: start the app.

The main command's tagging and separation options (``--tagger``, ``--device``, ``--steps``...) are the page's
defaults; ``--model`` and ``--tagger`` may be given several times: the page offers exactly those (the first is
the default, loaded before the server starts; the others on first use). Gradio is imported only here, after its
temporary folder is set inside the app's own. The server stops on Ctrl-C or SIGTERM within about a second, and
every session's files go with it. Exit codes: 0 stopped, 1 could not start, 2 usage error.
"""

from __future__ import annotations

import argparse
import atexit
import importlib.util
import ipaddress
import os
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path

_EPILOG = """\
examples:
  autosep web                                   http://127.0.0.1:7860 with the default models
  autosep web --port 8080 --steps 25 --device cuda
  autosep web --model audioldm2 --model audioldm2-large   the page offers both
  autosep web --host 0.0.0.0 --auth-file users.txt --keep-hours 4   a server for a group

needs the web extra: pip install "autosep[web]"
"""

LOOPBACK_NAMES = ("localhost",)
SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C, and systemd's or docker's stop


def build_parser() -> argparse.ArgumentParser:
    from ..commands.options import (add_separation_arguments, add_tagging_arguments, add_visual_arguments,
                                    positive_number)
    from ..video import DEFAULT_DESCRIBE_MODEL
    from ..pipeline.settings import PipelineOptions
    from ..taggers.settings import TAGGER_NAMES, TaggingSettings

    parser = argparse.ArgumentParser(prog="autosep web", formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="Start the autosep browser app (Gradio).", epilog=_EPILOG,
                                     conflict_handler="resolve",  # --model and --tagger become lists here
                                     # No prefixes: the main command's --describe TEXT would silently be taken as
                                     # --describe-model TEXT here.
                                     allow_abbrev=False)
    add_tagging_arguments(parser)
    add_separation_arguments(parser)
    offered = parser.add_argument_group("models offered in the page (visitors choose among these only)")
    offered.add_argument("--model", action="append", metavar="ALIAS_OR_PATH",
                         help="a separator the page offers: alias, Hugging Face id or local folder; repeat for "
                              f"several (the first is the default; default {PipelineOptions.model})")
    offered.add_argument("--tagger", action="append", choices=TAGGER_NAMES,
                         help="a tagger the page offers; repeat for several (the first is the default and uses "
                              f"--tagger-model; default {TaggingSettings.tagger})")
    add_visual_arguments(parser, describe=False)  # the picture of a video upload: as the main command
    offered.add_argument("--describe-model", default=PipelineOptions.describe_model, metavar="ID_OR_PATH",
                         help="the vision-language model behind the page's \"describe what you see\" box "
                              f"(default: {DEFAULT_DESCRIBE_MODEL})")
    _add_server_arguments(parser, positive_number)
    return parser


def _add_server_arguments(parser: argparse.ArgumentParser, positive_number) -> None:
    from ..pipeline.write import BIT_DEPTHS, FORMATS

    server = parser.add_argument_group("server")
    server.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine "
                        "only; 0.0.0.0: every network this machine is on)")
    server.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    server.add_argument("--auth", action="append", default=[], metavar="USER:PASSWORD",
                        help="a login the page asks for; repeat for several people")
    server.add_argument("--auth-file", metavar="FILE", help="logins, one USER:PASSWORD a line (# comments)")
    server.add_argument("--keep-hours", type=positive_number, default=1.0, metavar="H",
                        help="a session's files are removed when its tab closes, or after H hours without a "
                             "request (default 1)")
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


def main(argv: list[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if not 0 <= args.port <= 65535:
        print(f"autosep web: error: --port must be 0-65535, got {args.port}", file=sys.stderr)
        return 2
    from ..errors import AutosepError
    from ..logs import setup_logging

    setup_logging(verbose=args.verbose)
    try:
        config = config_for(args)
        logins = logins_for(args.auth, args.auth_file)
    except (AutosepError, ValueError) as exc:
        print(f"autosep web: error: {exc}", file=sys.stderr)
        return 2
    if importlib.util.find_spec("gradio") is None:  # found, not imported: Gradio must see its folder first
        print('autosep web: error: the web app needs Gradio: pip install "autosep[web]"', file=sys.stderr)
        return 1
    return _serve(config, args, logins)


def _serve(config, args: argparse.Namespace, logins: list[tuple[str, str]]) -> int:
    def say(text: str) -> None:
        print(f"autosep web: {text}", file=sys.stderr, flush=True)

    def interrupt(*_) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in SIGNALS}  # while loading: stop at once
    try:
        return _run(config, args, logins, say)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(config, args: argparse.Namespace, logins: list[tuple[str, str]], say) -> int:
    from ..errors import AutosepError

    try:
        server = start(config, host=args.host, port=args.port, share=args.share, auth=logins, say=say)
    except KeyboardInterrupt:
        say("stopped")
        return 0
    except AutosepError as exc:
        print(f"autosep web: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the port is taken, the address is not ours...
        print(f"autosep web: error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}; "
              "choose another --port", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in SIGNALS:  # while serving: the main thread closes the server itself, files first
        signal.signal(sig, lambda *_: stop.set())
    for warning in exposure_warnings(args.host, args.share, bool(logins)):
        say(f"warning: {warning}")
    say(f"serving on {server.url} (Ctrl-C to stop; every session's files are removed then)")
    if server.share_url:
        say(f"public link through Gradio's relay: {server.share_url}")
    while not stop.wait(0.2):
        pass
    say("stopping: removing every session's files")
    server.close()
    say("stopped")
    # Everything is removed and the port is free; tearing down torch, Gradio and their modules takes seconds
    # more (4-10 s measured on a busy 2-core machine), so the process ends here, after the exit handlers.
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def exposure_warnings(host: str, share: bool, has_auth: bool) -> list[str]:
    """What the operator should know before people connect: who can reach the app."""
    if has_auth:
        return []
    warnings = []
    if not is_loopback(host):
        warnings.append(f"listening on {host} without --auth: anyone who can reach this port can use the app and "
                        "its models; add --auth USER:PASSWORD or --auth-file FILE")
    if share:
        warnings.append("--share without --auth: anyone with the public link can use the app; add --auth")
    return warnings


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def logins_for(given: list[str], auth_file: str | None) -> list[tuple[str, str]]:
    """``USER:PASSWORD`` from the command line and the auth file, checked; raises ValueError saying where."""
    lines = [(f"--auth {entry.split(':', 1)[0]}:...", entry) for entry in given]
    if auth_file:
        try:
            text = Path(auth_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"--auth-file {auth_file}: cannot read it ({exc.strerror or exc})") from None
        lines += [(f"{auth_file} line {number}", line.strip()) for number, line in enumerate(text.splitlines(), 1)
                  if line.strip() and not line.strip().startswith("#")]
    logins = []
    for where, entry in lines:
        user, colon, password = entry.partition(":")
        if not colon or not user.strip() or not password:
            raise ValueError(f"{where}: a login is USER:PASSWORD, with both parts")
        logins.append((user.strip(), password))
    return logins


def config_for(args: argparse.Namespace):
    """The server's settings: the page's defaults (the main command's options), the offered models, limits."""
    from .engine import WebConfig

    models, taggers = list(args.model or []), list(args.tagger or [])
    args.model = models[0] if models else None
    args.tagger = taggers[0] if taggers else None
    options = options_for(args)
    return WebConfig(options, max_duration_s=args.max_duration, max_upload_mb=args.max_upload_mb,
                     models=models or [options.model], taggers=taggers or [options.tagger],
                     keep_hours=args.keep_hours)


def options_for(args: argparse.Namespace):
    """The page's defaults: the main command's options as parsed here (no inputs, output per session)."""
    from ..commands.options import options_from_args
    from ..pipeline.settings import PipelineOptions
    from ..taggers.settings import TaggingSettings

    if isinstance(args.model, list):
        args.model = args.model[0]
    if isinstance(args.tagger, list):
        args.tagger = args.tagger[0]
    args.model = args.model or PipelineOptions.model
    args.tagger = args.tagger or TaggingSettings.tagger
    args.sources, args.dry_run, args.out, args.overwrite = None, False, "separated", True
    args.keep = args.remove = None
    args.drop_unconfirmed, args.rounds = False, 1  # the stem check needs the whole-file pipeline, not the page
    options = options_from_args(args)
    options.settings()  # every option checked once, before any model loads
    return options


class Server:
    """A running app: its URL, and :meth:`close` to stop it and remove every session's files."""

    def __init__(self, app, url: str, root: Path, store, engine, share_url: str | None = None):
        self.app, self.url, self.root, self.store, self.engine = app, url, root, store, engine
        self.share_url = share_url

    def close(self) -> None:
        """Files first (their URLs answer 404 at once), then the server, then whatever is left of the folder."""
        try:
            self.store.close_all()
            self.app.close(verbose=False)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start(config, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
          auth: list[tuple[str, str]] | None = None, say=lambda text: None, engine=None) -> Server:
    """Load the models (unless ``engine`` is given), build the page and serve it; returns once it listens.

    Everything the app writes, Gradio's uploads and cache included, lives in one temporary folder removed by
    :meth:`Server.close`; Gradio is first imported here, after its folder is set.
    """
    root = Path(tempfile.mkdtemp(prefix="autosep-web-"))
    # Gradio reads these when it is imported: no telemetry or version check, its files kept in our folder.
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["GRADIO_TEMP_DIR"] = str(root / "gradio")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        return _launch(config, root, host, port, share, auth or None, say, engine)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


def _launch(config, root: Path, host: str, port: int, share: bool, auth, say, engine) -> Server:
    from starlette.middleware import Middleware

    from .app import build_app
    from .engine import Engine
    from .files import GoneFiles
    from .sessions import SessionStore

    if engine is None:
        say(f"loading the models (tagger {config.options.tagger}, separator {config.options.model})...")
        engine = Engine.load(config, report=lambda fraction, text: say(text))
    store = SessionStore(root / "sessions", keep_s=config.keep_hours * 3600, served_root=root / "gradio" / "served")
    store.start_sweeping()
    app = build_app(engine, store)
    app.queue(default_concurrency_limit=1, max_size=64)
    try:
        app.launch(server_name=host, server_port=port, share=share, auth=auth, prevent_thread_lock=True,
                   max_file_size=f"{config.max_upload_mb:g}mb", ssr_mode=False, quiet=True, show_error=False,
                   inbrowser=False, enable_monitoring=False, pwa=False, mcp_server=False, footer_links=["api"],
                   app_kwargs={"middleware": [Middleware(GoneFiles, root=root)]})
    except BaseException:
        store.close_all()
        raise
    return Server(app, app.local_url, root, store, engine, share_url=app.share_url)
