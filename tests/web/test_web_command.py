"""``autosep web`` on the command line: usage errors before anything loads, a missing model reported as the
main command reports it, and the main command's options as the page's defaults."""

from __future__ import annotations

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
                                           (["--guidance", "-1"], "guidance must be a number >= 0")])
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
