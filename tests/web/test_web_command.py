"""``autosep web`` on the command line: usage errors before anything loads, a missing model reported as the
main command reports it, and the main command's options as the page's defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from autosep.cli import main


def run(capsys, *args) -> tuple[int, str]:
    code = main(["web", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_help_lists_the_server_and_model_options(capsys):
    code, output = run(capsys, "--help")
    assert code == 0
    for option in ("--host", "--port", "--share", "--max-duration", "--model", "--tagger", "--device", "--steps"):
        assert option in output


@pytest.mark.parametrize("args, message", [(["--port", "70000"], "--port must be 0-65535"),
                                           (["--steps", "0"], "steps must be a whole number of at least 1"),
                                           (["--guidance", "-1"], "guidance must be a number >= 0"),
                                           # the main command's --describe is not a prefix of --describe-model here
                                           (["--describe", "the dog"], "unrecognized arguments: --describe")])
def test_usage_errors_exit_2_before_any_model_loads(capsys, args, message):
    code, output = run(capsys, *args)
    assert code == 2 and message in output


def test_a_missing_model_is_reported_and_nothing_is_served(capsys, tmp_path, tiny_cnn14_checkpoint):
    code, output = run(capsys, "--model", tmp_path / "no-such-model", "--tagger-model", tiny_cnn14_checkpoint,
                       "--device", "cpu", "--port", "0")
    assert code == 1
    assert "no-such-model" in output and "Traceback" not in output


def test_the_main_command_s_options_become_the_page_s_defaults():
    from autosep.web.command import build_parser, options_for

    args = build_parser().parse_args(["--model", "audioldm2-large", "--steps", "25", "--inversion", "ddim",
                                      "--inv-prompt", "null", "--seed", "7", "--render", "generative",
                                      "--tagger", "ast", "--threshold", "0.4", "--device", "cpu"])
    options = options_for(args)
    assert (options.model, options.steps, options.inversion, options.inv_prompt, options.seed, options.render) == \
        ("audioldm2-large", 25, "ddim", "null", 7, "generative")
    assert options.tagger == "ast" and options.planner.threshold == 0.4 and options.device == "cpu"
    assert args.host == "127.0.0.1" and args.port == 7860 and args.share is False


def test_models_and_taggers_offered_are_the_operator_s_lists(tmp_path):
    from autosep.web.command import build_parser, config_for
    from autosep.web.engine import choices_for

    folder = tmp_path / "my-separator"
    folder.mkdir()
    args = build_parser().parse_args(["--model", "audioldm2", "--model", str(folder), "--tagger", "panns",
                                      "--tagger", "ast", "--keep-hours", "4"])
    config = config_for(args)
    assert list(config.models) == ["audioldm2", str(folder)] and list(config.taggers) == ["panns", "ast"]
    assert config.options.model == "audioldm2" and config.options.tagger == "panns" and config.keep_hours == 4
    names = [c.name for c in choices_for([*config.models, str(tmp_path / "other" / "my-separator")])]
    assert names == ["audioldm2", "my-separator", "my-separator (2)"]  # folders by name, never by path


def test_the_picture_is_looked_at_as_the_main_command_does_unless_the_operator_says_no():
    from autosep.web.command import build_parser, config_for

    looking = config_for(build_parser().parse_args(["--visual-model", "google/siglip-base-patch16-224",
                                                    "--describe-model", "smolvlm"])).options
    assert looking.visual is True and looking.visual_model == "google/siglip-base-patch16-224"
    assert looking.describe_model == "smolvlm" and looking.describe is None  # descriptions come from visitors
    assert config_for(build_parser().parse_args(["--no-visual"])).options.visual is False


def test_logins_come_from_auth_and_the_auth_file(tmp_path):
    from autosep.web.command import logins_for

    users = tmp_path / "users.txt"
    users.write_text("# the lab\nann:pa:ss\n\nbo:pw\n")
    assert logins_for(["cy:x"], str(users)) == [("cy", "x"), ("ann", "pa:ss"), ("bo", "pw")]
    users.write_text("ann\n")
    with pytest.raises(ValueError, match=r"users.txt line 1: a login is USER:PASSWORD"):
        logins_for([], str(users))
    with pytest.raises(ValueError, match="--auth bo:...: a login is USER:PASSWORD"):
        logins_for(["bo:"], None)


def test_a_bad_login_is_a_usage_error(capsys):
    code, output = run(capsys, "--auth", "nopassword")
    assert code == 2 and "a login is USER:PASSWORD" in output


@pytest.mark.parametrize("host, share, auth, warned", [("127.0.0.1", False, False, False),
                                                      ("localhost", False, False, False),
                                                      ("0.0.0.0", False, False, True),
                                                      ("192.168.1.5", False, True, False),
                                                      ("127.0.0.1", True, False, True)])
def test_a_reachable_server_without_auth_is_warned_about(host, share, auth, warned):
    from autosep.web.command import exposure_warnings

    warnings = exposure_warnings(host, share, auth)
    assert bool(warnings) == warned
    assert all("--auth" in w for w in warnings)


@pytest.mark.slow  # a server process loading its models: about 30 s on a busy 2-core machine
def test_sigterm_removes_every_file_and_stops_within_two_seconds(tmp_path, tiny_audioldm2_dir,
                                                                  tiny_cnn14_checkpoint, make_mix, port):
    """The server as systemd or docker stop meets it: a separate process, SIGTERM, then SIGINT's twin."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from gradio_client import Client, handle_file

    temp = tmp_path / "tmp"
    temp.mkdir()
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]), TMPDIR=str(temp))
    server = subprocess.Popen([sys.executable, "-m", "autosep", "web", "--model", str(tiny_audioldm2_dir),
                               "--tagger-model", str(tiny_cnn14_checkpoint), "--device", "cpu", "--steps", "1",
                               "--window", "2.56", "--port", str(port)],
                              env=env, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in server.stderr:
            lines.append(line)
            if "serving on" in line or server.poll() is not None:
                break
        assert any(f"serving on http://127.0.0.1:{port}" in line for line in lines), "".join(lines)
        assert not any("share=True" in line for line in lines)  # autosep's own lines, not Gradio's
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False)
        make_mix(tmp_path / "take.wav")
        client.predict(handle_file(str(tmp_path / "take.wav")), "panns", api_name="/find")
        (root,) = temp.glob("autosep-web-*")
        assert list(root.glob("sessions/session-*/upload-1/take.wav"))
        assert (root / "gradio").is_dir() and not list(temp.glob("gradio*"))  # Gradio's folder is inside the app's
        sent = time.monotonic()
        server.send_signal(signal.SIGTERM)
        rest = server.communicate(timeout=30)[1]
        took = time.monotonic() - sent
        client.close()
    finally:
        server.kill()
    assert server.returncode == 0 and "stopped" in rest and "Traceback" not in rest
    assert not list(temp.glob("autosep-web-*"))  # every upload and stem gone
    assert took < 2.0, f"stopping took {took:.1f} s: {rest}"
