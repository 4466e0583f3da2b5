"""CONTRIBUTING.md's recipes, followed step by step, and its map of the code kept true.

Each recipe test does what the recipe says, in as few lines, and runs the result the way a user would.
"""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from autosep import cli
from autosep.pipeline import write

ROOT = Path(__file__).resolve().parents[1]
CONTRIBUTING = ROOT / "CONTRIBUTING.md"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def defined_names(path: Path) -> set[str]:
    """Every function and class of a module, nested ones as ``Class.method``."""
    names: set[str] = set()

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(prefix + child.name)
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.Assign):  # module constants a recipe names (SUBCOMMANDS, FORMATS)
                names.update(prefix + t.id for t in child.targets if isinstance(t, ast.Name))

    visit(ast.parse(path.read_text(encoding="utf-8")), "")
    return names


def test_every_file_function_hop_named_in_contributing_exists():
    references = re.findall(r"`((?:autosep|tests)/[\w/]+\.py):([\w.]+)`", CONTRIBUTING.read_text(encoding="utf-8"))
    assert len(references) >= 25  # the flow from `autosep mix.wav` to files on disk, hop by hop
    missing = [f"{path}:{name}" for path, name in references
               if not (ROOT / path).is_file() or name not in defined_names(ROOT / path)]
    assert not missing, "CONTRIBUTING.md names code that is not there (update the page):\n" + "\n".join(missing)


def test_contributing_has_the_four_recipes():
    headings = re.findall(r"^## (.+)$", CONTRIBUTING.read_text(encoding="utf-8"), flags=re.M)
    for recipe in ("Adding an output format", "Adding a subcommand", "Adding a backbone", "Adding a tagger"):
        assert recipe in headings


def test_every_subcommand_is_a_module_with_main():
    """The table cli.main dispatches on: each entry is a module with the ``main(argv)`` the recipe asks for."""
    import importlib

    for name, module in cli.SUBCOMMANDS.items():
        assert callable(importlib.import_module(module).main), name


# -- Adding a subcommand -------------------------------------------------------------------------------------


def test_adding_a_subcommand(tmp_path, monkeypatch, capsys):
    # 1. the module, with main(argv) -> exit code and a usage error as exit 2
    (tmp_path / "hello_command.py").write_text(textwrap.dedent('''
        import argparse
        from autosep.errors import EXIT_OK, EXIT_USAGE

        def main(argv):
            parser = argparse.ArgumentParser(prog="autosep hello")
            parser.add_argument("name")
            try:
                args = parser.parse_args(argv)
            except SystemExit as exc:
                return EXIT_USAGE if exc.code else EXIT_OK  # --help is 0
            print(f"hello {args.name}")
            return EXIT_OK
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    # 2. its line in SUBCOMMANDS
    monkeypatch.setitem(cli.SUBCOMMANDS, "hello", "hello_command")
    # 3. run through autosep's own entry point
    assert cli.main(["hello", "world"]) == 0
    assert capsys.readouterr().out == "hello world\n"
    assert cli.main(["hello"]) == 2  # a usage error, not a traceback
    assert "autosep hello" in capsys.readouterr().err


# -- Adding an output format ---------------------------------------------------------------------------------


def test_adding_an_output_format(tmp_path, monkeypatch, capsys, tiny_audioldm2_dir):
    # 1-2. the format and the subtypes it holds
    monkeypatch.setitem(write.FORMATS, "aiff", "AIFF")
    monkeypatch.setitem(write._ALLOWED_SUBTYPES, "aiff", ("PCM_16", "PCM_24", "FLOAT"))
    # 4. a recording separated into it, read back
    rate = 16000
    t = np.arange(int(1.5 * rate)) / rate
    mix = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.random.default_rng(0).standard_normal(len(t)))
    sf.write(tmp_path / "mix.wav", mix.astype(np.float32), rate, subtype="PCM_24")
    code = cli.main([str(tmp_path / "mix.wav"), "-o", str(tmp_path / "out"), "--format", "aiff", "-s", "tone",
                     "--model", str(tiny_audioldm2_dir), "--steps", "1", "--window", "2.56", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    folder = tmp_path / "out" / "mix"
    stems = sorted(folder.glob("*.aiff"))
    assert [p.name for p in stems] == ["residual.aiff", "tone.aiff"]
    for path in stems:  # the input's depth, kept where the format allows
        assert (sf.info(path).format, sf.info(path).subtype) == ("AIFF", "PCM_24")
    written = sum(sf.read(path, dtype="int32")[0].astype(np.int64) for path in stems)
    original = sf.read(tmp_path / "mix.wav", dtype="int32")[0].astype(np.int64)
    np.testing.assert_array_equal(written, original)  # stems + residual are the input, bit for bit
    # the remix command takes the new extension too
    assert cli.main(["remix", str(folder), "--gain", "residual=-inf", "-o", str(tmp_path / "tone.aiff")]) == 0
    remixed = sf.read(tmp_path / "tone.aiff", dtype="int32")[0]
    np.testing.assert_array_equal(remixed, sf.read(folder / "tone.aiff", dtype="int32")[0])
