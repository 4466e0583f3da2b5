"""The README's and the docs pages' examples run as written, on the tiny models, offline; their links resolve;
the README's test command is the one CI runs.

Every ```python block of README.md and docs/*.md is executed in order (README first, then the pages by name) in
one namespace, in a folder holding the files the examples name (``mix.wav``, ``recordings/``). The default model
names resolve to the tiny random-weight models (``audioldm2`` to the tiny AudioLDM2 folder, the PANNs checkpoint
to the tiny Cnn14), the way a user's download would be found.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def example_blocks() -> list[tuple[str, str]]:
    """(page name, code) for every Python example users are shown (CONTRIBUTING.md's are run by their own tests)."""
    pages = [README, *sorted((ROOT / "docs").glob("*.md"))]
    return [(p.relative_to(ROOT).as_posix(), b) for p in pages for b in python_blocks(p.read_text(encoding="utf-8"))]


def test_the_docs_have_the_python_api_examples():
    blocks = [b for _, b in example_blocks()]
    assert any("autosep.AutoSep" in b for b in blocks) and any("ZeroSep" in b for b in blocks)
    assert any("separate_file" in b for b in blocks)


def test_the_readme_is_a_users_page():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 400, f"README.md has {len(lines)} lines: move topic details to docs/"
    for page in ("python-api", "tagging", "models", "evaluation", "cluster", "web", "video", "benchmarks"):
        assert f"docs/{page}.md" in "\n".join(lines), f"README.md does not link docs/{page}.md"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page: Path):
    """A link to a file of the repository (README -> docs/x.md, docs page -> image or anchor) points at one."""
    text = page.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target) or target.startswith("mailto:"):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name} links {target}, which does not exist"
        if anchor and linked.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", linked.read_text(encoding="utf-8"), flags=re.M)
            slugs = {re.sub(r"[^\w\- ]", "", h.lower()).strip().replace(" ", "-") for h in headings}
            assert anchor in slugs, f"{page.name} links {target}: no such heading in {linked.name}"


def test_every_option_in_the_readme_options_table_exists():
    """The options table is the user's reference: each option it names is one `autosep --help` lists."""
    from autosep.cli import build_parser

    section = README.read_text(encoding="utf-8").split("## Options", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", section))
    known = {flag for action in build_parser()._actions for flag in action.option_strings}
    assert len(named) > 30 and not named - known, f"not options of autosep: {sorted(named - known)}"


def test_the_readme_test_command_is_the_one_ci_runs():
    """CI (.ci/run) runs exactly the commands of the README's "Running the tests" block, so they cannot drift."""
    readme = README.read_text(encoding="utf-8")
    section = readme.split("## Running the tests", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    commands = [line for line in block.splitlines() if line.startswith("python3 ")]
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    assert commands == [line for line in ci if line.startswith("python3 ")]
    assert commands[-1] == "python3 -m pytest"  # the default run: slow tests included
    # ... and installs the same Debian packages first
    readme_apt = re.search(r"apt-get install ([^\n]*)", block).group(1).split()
    ci_apt = re.search(r"apt-get install -y -qq --no-install-recommends \\\n(.*)", (ROOT / ".ci" / "run")
                       .read_text(encoding="utf-8")).group(1).split()
    assert readme_apt and readme_apt == ci_apt, (readme_apt, ci_apt)
    addopts = re.findall(r"^addopts\s*=.*$", (ROOT / "pyproject.toml").read_text(encoding="utf-8"), flags=re.M)
    assert addopts and not any("slow" in line for line in addopts)  # nothing deselects them by default


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_python_examples_run(tmp_path, monkeypatch, tiny_audioldm2_dir, tiny_stable_audio_3_dir,
                             tiny_cnn14_checkpoint, capsys):
    from autosep.separator import loading
    from autosep.taggers import panns

    aliases = {**loading.model_aliases(), "audioldm2": str(tiny_audioldm2_dir),
               "stable-audio-3": str(tiny_stable_audio_3_dir)}
    monkeypatch.setattr(loading, "model_aliases", lambda: aliases)
    monkeypatch.setattr(panns, "legacy_checkpoint_path", lambda: tiny_cnn14_checkpoint)
    monkeypatch.setattr(panns, "CNN14_SIZE", tiny_cnn14_checkpoint.stat().st_size)
    monkeypatch.setattr(panns, "CNN14_MD5", hashlib.md5(tiny_cnn14_checkpoint.read_bytes()).hexdigest())
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    t = np.arange(int(2.0 * 16000)) / 16000
    mix = (0.2 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
    sf.write("mix.wav", np.stack([mix, 0.8 * mix], axis=1), 16000, subtype="PCM_16")
    Path("recordings").mkdir()
    sf.write("recordings/take.wav", mix[::-1].copy(), 16000, subtype="PCM_16")

    namespace: dict = {"__name__": "readme"}
    for name, block in example_blocks():
        exec(compile(block, name, "exec"), namespace)  # the docs are this project's own files
    capsys.readouterr()
    assert len(namespace["results"]) == 2 and all(r.status == "done" for r in namespace["results"])
    assert namespace["dog"].shape[1] == 1  # generative: the separator's own mono stems
    assert tuple(namespace["stems"].shape[:2]) == (2, 2)  # two stereo stems from the full-band separator
