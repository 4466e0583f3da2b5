"""Names a visitor types are drawn and shown as written: ``$``, ``\\``, ``<`` and ``%`` are characters, never
mathtext, Markdown or HTML (a ``$$`` once ended a separation in matplotlib's math parser)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

NAMES = ["cash register $$", "$\\x$", "<b>bold</b> & co", "100% \\ 50_50 *x*"]


def test_spectrograms_are_drawn_for_names_with_math_and_markup_characters(tmp_path):
    from autosep.web.engine import mel_images

    rng = np.random.default_rng(0)
    stems = {}
    for index, name in enumerate(NAMES):
        stems[name] = tmp_path / f"{index}.wav"
        sf.write(stems[name], 0.1 * rng.standard_normal((8000, 2)), 8000)
    pictures = mel_images(stems, tmp_path / "mel", width_px=300, height_px=120)
    assert list(pictures) == NAMES
    assert all(path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 2000
               for path in pictures.values())


@pytest.mark.parametrize("name", NAMES)
def test_names_in_status_lines_render_as_typed(name):
    pytest.importorskip("gradio", reason='the web extra is not installed (pip install -e ".[web]")')
    import markdown_it

    from autosep.web.app import literal

    rendered = markdown_it.MarkdownIt().render(literal(name))
    text = rendered.removeprefix("<p>").removesuffix("</p>\n")
    assert text == name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")  # the HTML for the text
