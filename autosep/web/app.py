"""The Gradio page of ``autosep web``: upload or record, 1. Find sources, 2. Separate, 3. Remix.

Rules: the page holds a fixed number of stem slots (players, spectrograms, gain sliders) shown as needed, so
the API that ``gradio_client`` sees is stable; every handler turns a failure into ``gr.Error`` carrying the
command line's message (never a traceback); each browser session gets its own :class:`Session` folder, deleted
when the session ends (tab closed, or idle for ``SESSION_TTL_S``) and, with the whole server folder, at exit.
"""

from __future__ import annotations

import functools
import logging
import math
from pathlib import Path

import gradio as gr

from ..pipeline.recording import AUDIO_EXTENSIONS, VIDEO_EXTENSIONS
from ..errors import AutosepError
from ..pipeline.naming import RESIDUAL
from ..separator import KNOWN_MODELS as SEPARATOR_MODELS
from .engine import Engine, Session, SourceRow, clock

log = logging.getLogger("autosep.web")

MAX_STEMS = 13  # stem slots on the page: up to 12 sources and the residual
MUTE_DB = -60.0  # the gain slider's bottom: the stem is removed (-inf dB)
MAX_GAIN_DB = 12.0
SESSION_TTL_S = 6 * 3600
SOURCE_HEADERS = ["separate", "source", "prompt", "score", "active (s)"]
TAG_HEADERS = ["class", "AudioSet id", "max score"]

_INTRO = """# autosep
Split a recording into one stem per sound source: autosep **finds the sources itself** (audio tagger + planner),
separates each with ZeroSep, and lets you remix the stems. Upload audio or a video (its soundtrack is used), or
record from the microphone."""


def _page_errors(handler):
    """Show any failure in the page as the CLI's message: ``AutosepError`` as it is, anything else as one line
    naming the error type (the traceback goes to the server log only)."""

    @functools.wraps(handler)
    def wrapper(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except gr.Error:
            raise
        except AutosepError as exc:
            raise gr.Error(f"error: {exc}", print_exception=False) from None
        except Exception as exc:  # from torch/diffusers/decoders: one line in the page, the details in the log
            log.exception("autosep web: %s failed", handler.__name__)
            raise gr.Error(f"error: {type(exc).__name__}: {exc}", print_exception=False) from None

    return wrapper


def _rows_to_table(rows: list[SourceRow]) -> list[list]:
    return [[row.separate, row.label, row.prompt, "-" if row.score is None else round(float(row.score), 3),
             round(row.active_s, 1)] for row in rows]


def _table_to_rows(table, known: list[SourceRow]) -> list[SourceRow]:
    """The edited table back to sources: segments, mid and score come from the found source of that name."""
    data = table.get("data") if isinstance(table, dict) else table
    if data is None:
        return []
    if hasattr(data, "values"):  # a pandas DataFrame
        data = data.values.tolist()
    by_label = {row.label: row for row in known}
    rows = []
    for line in data:
        if not line or all(cell in (None, "") for cell in line):
            continue  # a blank row the user added and left empty
        line = list(line) + [None] * (len(SOURCE_HEADERS) - len(line))
        separate = line[0] not in (False, "false", "False", 0, None, "")
        label, prompt = str(line[1] or "").strip(), str(line[2] or "").strip()
        found = by_label.get(label)
        if found is None:  # typed straight into the table: a prompt of its own, active everywhere
            rows.append(SourceRow(label=label or prompt, prompt=prompt or label, segments=[], separate=separate))
        else:
            rows.append(SourceRow(label=label, prompt=prompt, score=found.score, active_s=found.active_s,
                                  segments=list(found.segments), mid=found.mid, separate=separate))
    return rows


def _gain_db(value: float) -> float:
    return -math.inf if value is None or float(value) <= MUTE_DB else float(value)


def build_app(engine: Engine, session_root: Path) -> gr.Blocks:
    """The page, wired to ``engine``; sessions are created under ``session_root``."""
    defaults = engine.defaults
    upload_types = sorted(AUDIO_EXTENSIONS | VIDEO_EXTENSIONS)
    models = list(dict.fromkeys([str(defaults["model"]), *(m.alias for m in SEPARATOR_MODELS)]))

    def session_of(session: Session | None) -> Session:
        return session if session is not None else Session(session_root)

    with gr.Blocks(title="autosep", analytics_enabled=False, delete_cache=(1800, SESSION_TTL_S)) as app:
        session_state = gr.State(None, time_to_live=SESSION_TTL_S,
                                 delete_callback=lambda s: s.cleanup() if s is not None else None)
        found_state = gr.State([])  # list[SourceRow] found in step 1 (segments, scores)
        tags_state = gr.State([])
        names_state = gr.State([])  # stem names of the last separation, slot order
        gr.Markdown(_INTRO)

        with gr.Row():
            limits = f"up to {engine.config.max_upload_mb:g} MB and {clock(engine.config.max_duration_s)} long"
            upload = gr.File(label=f"Recording: audio or video file ({limits})", file_types=upload_types,
                             type="filepath", elem_id="upload")
            microphone = gr.Audio(label="...or record from the microphone", sources=["microphone"],
                                  type="filepath", elem_id="microphone")

        gr.Markdown("## 1. Find sources")
        find_button = gr.Button("1. Find sources", variant="primary", elem_id="find")
        find_status = gr.Markdown(elem_id="find-status")
        table = gr.Dataframe(headers=SOURCE_HEADERS, datatype=["bool", "str", "str", "str", "number"],
                             type="array", interactive=True, label="Sources (untick to leave one out; edit a prompt)",
                             column_count=len(SOURCE_HEADERS), static_columns=[3, 4], elem_id="sources")
        with gr.Row():
            own_prompt = gr.Textbox(label="Add your own source", placeholder="e.g. dog barking", scale=4,
                                    elem_id="own-prompt")
            add_button = gr.Button("Add", scale=1, elem_id="add")
        with gr.Accordion("Raw top tags", open=False):
            tags_table = gr.Dataframe(headers=TAG_HEADERS, type="array", interactive=False, label="Top tags")

        gr.Markdown("## 2. Separate")
        with gr.Accordion("Settings", open=False):
            with gr.Row():
                model = gr.Dropdown(models, value=str(defaults["model"]), allow_custom_value=True,
                                    label="model (alias, Hugging Face id or local folder)")
                inversion = gr.Radio(["ddpm", "ddim"], value=defaults["inversion"], label="inversion")
                inv_prompt = gr.Radio(["others", "null"], value=defaults["inv_prompt"],
                                      label="c_inv (inversion prompt)")
                render = gr.Radio(["projected", "generative"], value=defaults["render"], label="render")
            with gr.Row():
                steps = gr.Slider(1, 200, value=int(defaults["steps"]), step=1, label="steps")
                guidance = gr.Number(value=float(defaults["guidance"]), minimum=0, label="guidance")
                seed = gr.Number(value=int(defaults["seed"]), precision=0, label="seed")
        separate_button = gr.Button("2. Separate", variant="primary", elem_id="separate")
        separate_status = gr.Markdown(elem_id="separate-status")
        slots, players, pictures = [], [], []
        for index in range(MAX_STEMS):
            with gr.Row(visible=False) as slot:
                slots.append(slot)
                players.append(gr.Audio(type="filepath", interactive=False, label=f"stem {index + 1}",
                                        elem_id=f"stem-{index}", scale=1, buttons=["download"]))
                pictures.append(gr.Image(type="filepath", interactive=False, label="mel spectrogram", scale=2,
                                         elem_id=f"mel-{index}", buttons=["download", "fullscreen"]))
        archive = gr.File(label="All stems + manifest (zip)", interactive=False, elem_id="archive", visible=False)

        gr.Markdown(f"## 3. Remix\nA gain per stem; {MUTE_DB:.0f} dB removes the stem. With every gain at 0 dB "
                    "the remix is the input itself.")
        sliders = [gr.Slider(MUTE_DB, MAX_GAIN_DB, value=0.0, step=0.5, label=f"stem {index + 1} (dB)",
                             visible=False, elem_id=f"gain-{index}") for index in range(MAX_STEMS)]
        remix_button = gr.Button("3. Remix", variant="primary", elem_id="remix")
        remix_status = gr.Markdown(elem_id="remix-status")
        remix_player = gr.Audio(type="filepath", interactive=False, label="remix", elem_id="remix-player",
                                buttons=["download"], visible=False)
        remix_file = gr.File(label="Remix download", interactive=False, elem_id="remix-file", visible=False)

        # -- handlers ----------------------------------------------------------------------------------------

        @_page_errors
        def find(session, upload_path, microphone_path, progress=gr.Progress()):
            source = upload_path or microphone_path
            if not source:
                raise AutosepError("no recording yet; upload a file or record one first")
            session = session_of(session)
            session.adopt(source, Path(source).name if upload_path else "microphone.wav")
            found = engine.find_sources(session, report=lambda f, text: progress(f, desc=text))
            lines = [f"**{session.display_name}**: {found.duration_s:.1f} s, {len(found.sources)} source(s) found."]
            lines += [f"- {w}" for w in found.warnings]
            if not found.sources:
                lines.append("No source found: add your own prompt below, then separate.")
            tags = [[t.get("label"), t.get("mid") or "-", t.get("max_score")] for t in found.top_tags]
            return (session, found.sources, found.top_tags, "\n".join(lines), _rows_to_table(found.sources), tags)

        find_button.click(find, [session_state, upload, microphone],
                          [session_state, found_state, tags_state, find_status, table, tags_table], api_name="find",
                          concurrency_limit=1, concurrency_id="models")  # one model run at a time, in one queue

        @_page_errors
        def add_source(session, found, current, prompt):
            if session is None or session.input is None:
                raise AutosepError("run step 1 (Find sources) on a recording first")
            row = engine.own_source(session, prompt)
            rows = _table_to_rows(current, found)
            if any(r.prompt.casefold() == row.prompt.casefold() for r in rows):
                raise AutosepError(f"{row.prompt!r} is already in the list")
            return found + [row], _rows_to_table(rows + [row]), ""

        add_button.click(add_source, [session_state, found_state, table, own_prompt], [found_state, table, own_prompt],
                         api_name="add_source")
        own_prompt.submit(add_source, [session_state, found_state, table, own_prompt],
                          [found_state, table, own_prompt], api_name=False)

        @_page_errors
        def separate(session, found, tags, current, model_v, inversion_v, inv_prompt_v, render_v, steps_v,
                     guidance_v, seed_v, progress=gr.Progress()):
            if session is None or session.input is None:
                raise AutosepError("run step 1 (Find sources) on a recording first")
            rows = _table_to_rows(current, found)
            for row in rows:
                if not row.segments and session.found is not None:
                    row.segments = [(0.0, session.found.duration_s)]
            if sum(1 for r in rows if r.separate) > MAX_STEMS - 1:
                raise AutosepError(f"at most {MAX_STEMS - 1} sources at a time; untick some")
            settings = {"model": str(model_v).strip(), "inversion": inversion_v, "inv_prompt": inv_prompt_v,
                        "render": render_v, "steps": steps_v, "guidance": guidance_v, "seed": seed_v}
            if guidance_v is None or seed_v is None or steps_v is None:
                raise AutosepError("steps, guidance and seed need a value")
            done = engine.separate(session, rows, settings, top_tags=tags,
                                   report=lambda f, text: progress(f, desc=text))
            names = list(done.stems)
            lines = [f"**{len(names)} stems** from {session.display_name}"
                     + (" (the residual holds what no source explains; everything above 8 kHz)"
                        if RESIDUAL in names else "")]
            lines += [f"- {w}" for w in done.warnings]
            updates = []
            for index in range(MAX_STEMS):
                shown = index < len(names)
                updates.append(gr.update(visible=shown))  # the slot's row
            audio = [gr.update(value=str(done.stems[names[i]]) if i < len(names) else None,
                               label=names[i] if i < len(names) else f"stem {i + 1}") for i in range(MAX_STEMS)]
            images = [gr.update(value=str(done.spectrograms[names[i]]) if i < len(names) else None,
                                label=f"{names[i]}: mel spectrogram" if i < len(names) else "mel spectrogram")
                      for i in range(MAX_STEMS)]
            gains = [gr.update(visible=i < len(names), value=0.0,
                               label=f"{names[i]} (dB)" if i < len(names) else f"stem {i + 1} (dB)")
                     for i in range(MAX_STEMS)]
            return (names, "\n".join(lines), *updates, *audio, *images, gr.update(value=str(done.archive), visible=True),
                    *gains, gr.update(value=None, visible=False), gr.update(value=None, visible=False), "")

        separate_button.click(
            separate,
            [session_state, found_state, tags_state, table, model, inversion, inv_prompt, render, steps, guidance, seed],
            [names_state, separate_status, *slots, *players, *pictures, archive, *sliders,
             remix_player, remix_file, remix_status],
            api_name="separate", concurrency_limit=1, concurrency_id="models",
        )

        @_page_errors
        def do_remix(session, names, *gains):
            if session is None or session.separated is None or not names:
                raise AutosepError("nothing to remix yet; run step 2 (Separate) first")
            result = engine.remix(session, {name: _gain_db(gain) for name, gain in zip(names, gains)})
            changed = [f"{n} {'off' if g == -math.inf else f'{g:+g} dB'}" for n, g in result.gains_db.items() if g != 0]
            lines = [f"**Remix**: {', '.join(changed) or 'every stem at 0 dB (the input itself)'}"]
            lines += [f"- {session.tell(w)}" for w in result.warnings]
            return ("\n".join(lines), gr.update(value=str(result.path), visible=True),
                    gr.update(value=str(result.path), visible=True))

        remix_button.click(do_remix, [session_state, names_state, *sliders], [remix_status, remix_player, remix_file],
                           api_name="remix", concurrency_limit=1)
    return app
