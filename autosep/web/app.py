"""The Gradio page of ``autosep web``: upload or record, 1. Find sources, 2. Separate, 3. Remix.

Rules:
- The page holds a fixed number of stem slots (players, spectrograms, gain sliders) shown as needed, so the API
  that ``gradio_client`` sees is stable.
- A session is Gradio's session id (:class:`SessionStore`); a new recording clears everything of the old one.
- Errors stay: a failure is the step's own status line (the command line's message in plain words) until the
  next action, never a toast that fades or a traceback.
- Progress: the step in words and a bar on the step's status line, fed by the pipeline's progress hooks; the
  step buttons are off while a step runs and otherwise on only when their step can run, the next one
  highlighted.
- Text a visitor typed (source names) is shown literally: Markdown and HTML characters escaped, no LaTeX.
"""

from __future__ import annotations

import functools
import html
import logging
import math
import re
from pathlib import Path

import gradio as gr

from ..errors import AutosepError
from ..pipeline.naming import RESIDUAL
from ..pipeline.recording import AUDIO_EXTENSIONS, VIDEO_EXTENSIONS
from .engine import MAX_SOURCES, Engine, Session, SourceRow, clock
from .sessions import SessionStore

log = logging.getLogger("autosep.web")

MAX_STEMS = MAX_SOURCES + 1  # stem slots on the page: the sources and the residual
MUTE_DB = -60.0  # the gain slider's bottom: the stem is removed (-inf dB)
MAX_GAIN_DB = 12.0
SOURCE_HEADERS = ["separate", "source", "prompt", "score", "active (s)", "on screen"]
TAG_HEADERS = ["class", "AudioSet id", "max score"]
MICROPHONE_NAME = "microphone.wav"

HINTS = {
    "tagger": "the model that listens to the recording and names the sounds in it",
    "model": "the sound model that pulls each source out of the recording",
    "inversion": "how the recording is turned back into the model's noise: ddpm (default) keeps it closest to the "
                 "recording; ddim is the older, deterministic way",
    "inv_prompt": "what the model is told while it does that: the other sources in that stretch (others), or "
                  "nothing (null)",
    "render": "projected: the stems add back up to the recording exactly (a leftover stem holds the rest); "
              "generative: the model's own sound, which need not add up",
    "steps": "more steps: slower, usually cleaner",
    "guidance": "1 pulls the source out alone; 0 gives the whole mix back; between, the source is brought "
                "forward with the rest still heard",
    "seed": "the same seed and settings give the same stems",
    "describe": "one thing in the picture a line, e.g. \"the woman with the red guitar\": a vision-language model "
                "names the sound it makes, and that becomes a source of its own",
}

_INTRO = """# autosep
Split a recording into one stem per sound source: autosep **finds the sources itself** (audio tagger + planner),
separates each with ZeroSep, and lets you remix the stems. Upload audio or a video, or record from the
microphone. For a video, what is on screen backs up the sources heard, you can describe what you see, and the
remix comes back as a video too."""

_MARKDOWN_SPECIALS = re.compile(r"([\\`*_\[\]$~|])")  # the characters that mean something inside a line


def literal(text: str) -> str:
    """``text`` as it is, inside Markdown: HTML and Markdown characters escaped (``$$`` stays two dollars)."""
    return _MARKDOWN_SPECIALS.sub(r"\\\1", html.escape(str(text), quote=False))


def error_line(message: str) -> str:
    return f"**error:** {literal(message)}"


def _status(step: str, elem_id: str) -> gr.Markdown:
    """A step's status line: no LaTeX, so ``$`` in a name or message is a dollar sign."""
    return gr.Markdown(latex_delimiters=[], min_height=32, label=f"{step} status", elem_id=elem_id)


def _rows_to_table(rows: list[SourceRow]) -> list[list]:
    return [[row.separate, row.label, row.prompt, "-" if row.score is None else round(float(row.score), 3),
             round(row.active_s, 1), row.on_screen or "-"] for row in rows]


def _table_to_rows(table, known: list[SourceRow], duration_s: float) -> list[SourceRow]:
    """The edited table back to sources: segments, mid and score come from the known source of that name; a row
    typed straight into the table is a prompt of its own, active everywhere."""
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
        if found is None:
            rows.append(SourceRow(label=label or prompt, prompt=prompt or label, segments=[(0.0, duration_s)],
                                  active_s=duration_s, separate=separate))
        else:
            rows.append(SourceRow(label=label, prompt=prompt, score=found.score, active_s=found.active_s,
                                  segments=list(found.segments), mid=found.mid, separate=separate,
                                  on_screen=found.on_screen))
    return rows


def playable(video: Path | None) -> bool:
    """Whether a browser plays ``video`` as it is (h264/av1 in mp4, vp8/vp9/av1 in webm, theora in ogg). Any other
    is not put in a player: Gradio would re-encode it with ffmpeg into its own cache, outside the session's folder
    (and slowly, for a long video)."""
    from gradio.processing_utils import video_is_playable

    return video is not None and video_is_playable(str(video))


def _gain_db(value: float) -> float:
    return -math.inf if value is None or float(value) <= MUTE_DB else float(value)


class Page:
    """The page's components, laid out in the order a visitor meets them."""

    def __init__(self, engine: Engine):
        gr.Markdown(_INTRO)
        self._input(engine)
        self._find(engine)
        self._settings(engine)
        self._separate()
        self._remix()

    def _input(self, engine: Engine) -> None:
        limits = f"up to {engine.config.max_upload_mb:g} MB and {clock(engine.config.max_duration_s)} long"
        with gr.Row():
            self.upload = gr.File(label=f"Recording: audio or video file ({limits})", type="filepath",
                                  file_types=sorted(AUDIO_EXTENSIONS | VIDEO_EXTENSIONS), elem_id="upload")
            self.microphone = gr.Audio(label="...or record from the microphone", sources=["microphone"],
                                       type="filepath", elem_id="microphone")
        self.upload_status = _status("upload", "upload-status")

    def _find(self, engine: Engine) -> None:
        gr.Markdown("## 1. Find sources")
        with gr.Row():
            names = [c.name for c in engine.taggers]
            self.tagger = gr.Dropdown(names, value=names[0], label="tagger", info=HINTS["tagger"],
                                      allow_custom_value=False, interactive=len(names) > 1, elem_id="tagger")
            self.find_button = gr.Button("1. Find sources", variant="primary", interactive=False, elem_id="find")
        with gr.Row():  # a video upload: its picture, and what the visitor sees in it
            self.video = gr.Video(label="the video", interactive=False, visible=False, elem_id="video", height=240)
            self.describe = gr.Textbox("", label="Describe what you see", info=HINTS["describe"], lines=4,
                                       placeholder="the dog on the sofa", visible=False, elem_id="describe")
        self.find_status = _status("find", "find-status")
        self.table = gr.Dataframe(headers=SOURCE_HEADERS, datatype=["bool", "str", "str", "str", "number", "str"],
                                  type="array", interactive=True, column_count=len(SOURCE_HEADERS),
                                  label="Sources (untick to leave one out; edit a prompt)", static_columns=[3, 4, 5],
                                  wrap=True, column_widths=["10%", "22%", "26%", "9%", "11%", "22%"],
                                  elem_id="sources")
        with gr.Row():
            self.own_prompt = gr.Textbox(label="Add your own source", placeholder="e.g. dog barking", scale=4,
                                         elem_id="own-prompt")
            self.add_button = gr.Button("Add", scale=1, elem_id="add")
        with gr.Accordion("Raw top tags", open=False):
            self.tags_table = gr.Dataframe(headers=TAG_HEADERS, type="array", interactive=False, label="Top tags")

    def _settings(self, engine: Engine) -> None:
        defaults, names = engine.defaults, [c.name for c in engine.models]
        gr.Markdown("## 2. Separate")
        with gr.Accordion("Settings", open=False):
            with gr.Row():
                self.model = gr.Dropdown(names, value=defaults["model"], allow_custom_value=False, label="model",
                                         info=HINTS["model"], interactive=len(names) > 1, elem_id="model")
                self.inversion = gr.Radio(["ddpm", "ddim"], value=defaults["inversion"], label="inversion",
                                          info=HINTS["inversion"])
                self.inv_prompt = gr.Radio(["others", "null"], value=defaults["inv_prompt"],
                                           label="inversion prompt", info=HINTS["inv_prompt"])
                self.render = gr.Radio(["projected", "generative"], value=defaults["render"], label="render",
                                       info=HINTS["render"])
            with gr.Row():
                self.steps = gr.Slider(1, 200, value=int(defaults["steps"]), step=1, label="steps",
                                       info=HINTS["steps"])
                self.guidance = gr.Number(value=float(defaults["guidance"]), minimum=0, label="guidance",
                                          info=HINTS["guidance"])
                self.seed = gr.Number(value=int(defaults["seed"]), precision=0, label="seed", info=HINTS["seed"])

    def _separate(self) -> None:
        self.separate_button = gr.Button("2. Separate", variant="secondary", interactive=False, elem_id="separate")
        self.separate_status = _status("separate", "separate-status")
        self.slots, self.players, self.pictures = [], [], []
        for index in range(MAX_STEMS):
            with gr.Row(visible=False) as slot:
                self.slots.append(slot)
                self.players.append(gr.Audio(type="filepath", interactive=False, label=f"stem {index + 1}",
                                             elem_id=f"stem-{index}", scale=1, buttons=["download"]))
                self.pictures.append(gr.Image(type="filepath", interactive=False, label="mel spectrogram", scale=2,
                                              elem_id=f"mel-{index}", buttons=["download", "fullscreen"]))
        self.archive = gr.File(label="All stems + manifest (zip)", interactive=False, elem_id="archive",
                               visible=False)

    def _remix(self) -> None:
        gr.Markdown(f"## 3. Remix\nA gain per stem; {MUTE_DB:.0f} dB removes the stem. With every gain at 0 dB "
                    "the remix is the input itself.")
        self.sliders = [gr.Slider(MUTE_DB, MAX_GAIN_DB, value=0.0, step=0.5, label=f"stem {index + 1} (dB)",
                                  visible=False, elem_id=f"gain-{index}") for index in range(MAX_STEMS)]
        self.remix_button = gr.Button("3. Remix", variant="secondary", interactive=False, elem_id="remix")
        self.remix_status = _status("remix", "remix-status")
        self.remix_player = gr.Audio(type="filepath", interactive=False, label="remix", elem_id="remix-player",
                                     buttons=["download"], visible=False)
        with gr.Row():
            self.remix_video = gr.Video(label="remixed video", interactive=False, visible=False, height=260,
                                        elem_id="remix-video")
            self.remix_video_file = gr.File(label="remixed video (download)", interactive=False, visible=False,
                                            elem_id="remix-video-file")

    @property
    def buttons(self) -> list:
        return [self.find_button, self.separate_button, self.remix_button]

    @property
    def results(self) -> list:
        """Every component that shows a result of the current recording (cleared by a new one)."""
        return [self.find_status, self.table, self.tags_table, self.separate_status, *self.slots, *self.players,
                *self.pictures, self.archive, *self.sliders, self.remix_status, self.remix_player, *self.remixed]

    @property
    def remixed(self) -> list:
        return [self.remix_video, self.remix_video_file]

    @property
    def settings(self) -> list:
        return [self.model, self.inversion, self.inv_prompt, self.render, self.steps, self.guidance, self.seed]

    def step_buttons(self, session: Session | None) -> dict:
        """Each step button on only when its step can run; the next step's highlighted."""
        can = [session is not None and session.input is not None, session is not None and session.found is not None,
               session is not None and session.separated is not None]
        highlighted = 2 if can[2] else 1 if can[1] else 0
        return {button: gr.update(interactive=ok, variant="primary" if index == highlighted else "secondary")
                for index, (button, ok) in enumerate(zip(self.buttons, can))}

    def busy(self) -> dict:
        return {button: gr.update(interactive=False) for button in self.buttons}

    def cleared(self, from_step: int = 1) -> dict:
        """The page with no results from ``from_step`` on (1: everything of the recording; 2: separation on)."""
        updates: dict = {}
        if from_step <= 1:
            updates.update({self.find_status: "", self.table: [], self.tags_table: []})
        updates.update({self.separate_status: "", self.archive: gr.update(value=None, visible=False),
                        self.remix_status: "", self.remix_player: gr.update(value=None, visible=False),
                        **{c: gr.update(value=None, visible=False) for c in self.remixed}})
        for slot, player, picture, slider in zip(self.slots, self.players, self.pictures, self.sliders):
            updates.update({slot: gr.update(visible=False), player: None, picture: None,
                            slider: gr.update(value=0.0, visible=False)})
        return updates


def _in_status(status_of):
    """Run a handler; a failure becomes the step's status line (``status_of(page)``) with the buttons restored.
    ``AutosepError`` as it is; anything else one line naming the error type (the traceback in the server log)."""

    def decorate(handler):
        @functools.wraps(handler)
        def wrapper(self: "Handlers", *args, **kwargs):
            try:
                return handler(self, *args, **kwargs)
            except AutosepError as exc:
                message = str(exc)
            except Exception as exc:  # torch/diffusers/decoders: one line in the page, the details in the log
                log.exception("autosep web: %s failed", handler.__name__)
                message = f"{type(exc).__name__}: {exc}"
            request = next((a for a in [*args, *kwargs.values()] if isinstance(a, gr.Request)), None)
            session = self.session(request)
            text = self.engine.tell(session, message) if session is not None else message
            return {status_of(self.page): error_line(text), **self.page.step_buttons(session)}

        return wrapper

    return decorate


class Handlers:
    """What each event does; every handler returns only the components it changes."""

    def __init__(self, engine: Engine, store: SessionStore, page: Page):
        self.engine, self.store, self.page = engine, store, page

    def session(self, request: gr.Request | None) -> Session | None:
        session_id = getattr(request, "session_hash", None)
        return self.store.get(session_id) if session_id else None

    def _progress(self, progress: gr.Progress):
        return lambda fraction, text: progress(fraction, desc=text)

    @_in_status(lambda page: page.upload_status)
    def receive(self, path: str | None, name: str | None, request: gr.Request) -> dict:
        """A new recording (or none): everything of the old one goes; the length and format are checked now."""
        session = self.session(request)
        page = self.page
        session.forget_results()
        updates = {**page.cleared(), page.upload_status: "", page.video: gr.update(value=None, visible=False),
                   page.describe: gr.update(visible=False)}
        if path:
            try:
                duration = self.engine.receive(session, path, name or Path(path).name)
            except AutosepError as exc:  # refused: the old recording's results are gone all the same
                updates[page.upload_status] = error_line(self.engine.tell(session, str(exc)))
            else:
                video, plays = ", a video" if session.video else "", playable(session.video)
                if session.video is not None and not plays:
                    video += " (its picture is looked at; its format does not play in a browser)"
                updates[page.upload_status] = (f"**{literal(session.display_name)}**: {clock(duration)} long"
                                               f"{video}; next: 1. Find sources")
                if session.video is not None:
                    updates[page.describe] = gr.update(visible=True)
                if plays:
                    updates[page.video] = gr.update(value=str(session.video), visible=True)
        return {**updates, **page.step_buttons(session)}

    def receive_upload(self, path: str | None, request: gr.Request) -> dict:
        return self.receive(path, None, request)

    def receive_recording(self, path: str | None, request: gr.Request) -> dict:
        return self.receive(path, MICROPHONE_NAME, request)

    @_in_status(lambda page: page.find_status)
    def find(self, upload: str | None, tagger: str, describe: str | None, request: gr.Request,
             progress=gr.Progress()) -> dict:
        session, page = self.session(request), self.page
        if upload and upload not in session.adopted:  # an API caller sends the file with the request
            self.engine.receive(session, upload, Path(upload).name)
        found = self.engine.find_sources(session, tagger, report=self._progress(progress),
                                         describe=str(describe or "").splitlines())
        lines = [f"**{literal(session.display_name)}**: {found.duration_s:.1f} s, {len(found.sources)} source(s) "
                 "found; next: edit the list if you like, then 2. Separate"]
        lines += [f"- {literal(w)}" for w in found.warnings]
        if not found.sources:
            lines.append("No source found: add your own prompt below, then separate.")
        tags = [[t.get("label"), t.get("mid") or "-", t.get("max_score")] for t in found.top_tags]
        return {**page.cleared(from_step=2), page.find_status: "\n".join(lines),
                page.table: _rows_to_table(found.sources), page.tags_table: tags, **page.step_buttons(session)}

    @_in_status(lambda page: page.find_status)
    def add_source(self, table, prompt: str, request: gr.Request) -> dict:
        session, page = self.session(request), self.page
        if session.found is None:
            raise AutosepError("run step 1 (Find sources) on a recording first")
        row = self.engine.own_source(session, prompt)
        rows = _table_to_rows(table, session.found.sources, session.found.duration_s)
        if any(r.prompt.casefold() == row.prompt.casefold() for r in rows):
            raise AutosepError(f"{row.prompt!r} is already in the list")
        session.found.sources.append(row)
        return {page.table: _rows_to_table(rows + [row]), page.own_prompt: ""}

    @_in_status(lambda page: page.separate_status)
    def separate(self, table, model, inversion, inv_prompt, render, steps, guidance, seed, request: gr.Request,
                 progress=gr.Progress()) -> dict:
        session, page = self.session(request), self.page
        if session.found is None:
            raise AutosepError("run step 1 (Find sources) on a recording first")
        rows = _table_to_rows(table, session.found.sources, session.found.duration_s)
        if sum(1 for r in rows if r.separate) > MAX_SOURCES:
            raise AutosepError(f"at most {MAX_SOURCES} sources at a time; untick some")
        settings = {"model": model, "inversion": inversion, "inv_prompt": inv_prompt, "render": render,
                    "steps": steps, "guidance": guidance, "seed": seed}
        done = self.engine.separate(session, rows, settings, top_tags=session.found.top_tags,
                                    report=self._progress(progress))
        names = list(done.stems)
        lines = [f"**{len(names)} stems** from {literal(session.display_name)}"
                 + (" (the residual holds what no source explains; everything above 8 kHz)" if RESIDUAL in names
                    else "") + "; next: set the gains, then 3. Remix"]
        lines += [f"- {literal(w)}" for w in done.warnings]
        updates = {**page.cleared(from_step=2), page.separate_status: "\n".join(lines),
                   page.archive: gr.update(value=str(done.archive), visible=True)}
        for name, slot, player, picture, slider in zip(names, page.slots, page.players, page.pictures,
                                                       page.sliders):
            updates.update({slot: gr.update(visible=True),
                            player: gr.update(value=str(done.stems[name]), label=name),
                            picture: gr.update(value=str(done.spectrograms[name]), label=f"{name}: mel spectrogram"),
                            slider: gr.update(visible=True, value=0.0, label=f"{name} (dB)")})
        return {**updates, **page.step_buttons(session)}

    @_in_status(lambda page: page.remix_status)
    def remix(self, request: gr.Request, *gains: float) -> dict:
        session, page = self.session(request), self.page
        if session.separated is None:
            raise AutosepError("nothing to remix yet; run step 2 (Separate) first")
        names = list(session.separated.stems)
        result = self.engine.remix(session, {name: _gain_db(gain) for name, gain in zip(names, gains)})
        changed = [f"{n} {'off' if g == -math.inf else f'{g:+g} dB'}" for n, g in result.gains_db.items() if g != 0]
        lines = [f"**Remix**: {literal(', '.join(changed)) or 'every stem at 0 dB (the input itself)'}"]
        lines += [f"- {literal(self.engine.tell(session, w))}" for w in result.warnings]
        video = session.remixed_video
        plays = playable(video)  # probed once: it runs ffprobe
        shown = {page.remix_video_file: gr.update(value=str(video) if video else None, visible=video is not None),
                 page.remix_video: gr.update(value=str(video) if plays else None, visible=plays)}
        return {page.remix_status: "\n".join(lines), **shown,
                page.remix_player: gr.update(value=str(result.path), visible=True), **page.step_buttons(session)}

    def busy(self) -> dict:
        return self.page.busy()

    def closed(self, request: gr.Request) -> None:
        """The tab was closed: the session's files go now."""
        if request is not None and request.session_hash:
            self.store.close(request.session_hash)


def build_app(engine: Engine, store: SessionStore) -> gr.Blocks:
    """The page, wired to ``engine``; sessions live in ``store``."""
    keep_s = int(store.keep_s)
    # Gradio's own copies (uploads, microphone takes) go after the keep time too (checked every 10 minutes).
    with gr.Blocks(title="autosep", analytics_enabled=False, delete_cache=(min(600, keep_s), keep_s)) as app:
        page = Page(engine)
        handlers = Handlers(engine, store, page)
        _wire_input(page, handlers)
        _wire_steps(page, handlers)
        app.unload(handlers.closed)
    return app


def _wire_input(page: Page, handlers: Handlers) -> None:
    outputs = [page.upload_status, page.video, page.describe, *page.results, *page.buttons]
    page.upload.change(handlers.receive_upload, [page.upload], outputs, api_visibility="private",
                       concurrency_limit=4)
    page.microphone.change(handlers.receive_recording, [page.microphone], outputs, api_visibility="private",
                           concurrency_limit=4)


def _wire_steps(page: Page, handlers: Handlers) -> None:
    def step(button, handler, inputs, outputs, status, **options):
        """Buttons off at once (no queue), then the step with its progress on the status line."""
        every = list({id(c): c for c in [status, *outputs, *page.buttons]}.values())  # each once, status first
        button.click(handlers.busy, None, page.buttons, queue=False, api_visibility="private").then(
            handler, inputs, every, show_progress_on=[status], **options)

    step(page.find_button, handlers.find, [page.upload, page.tagger, page.describe], page.results, page.find_status,
         api_name="find", concurrency_limit=1, concurrency_id="models")  # one model run at a time, in one queue
    step(page.separate_button, handlers.separate, [page.table, *page.settings], page.results,
         page.separate_status, api_name="separate", concurrency_limit=1, concurrency_id="models")
    step(page.remix_button, handlers.remix, page.sliders, [page.remix_player, *page.remixed], page.remix_status,
         api_name="remix", concurrency_limit=1)
    for event in (page.add_button.click, page.own_prompt.submit):
        event(handlers.add_source, [page.table, page.own_prompt], [page.table, page.own_prompt, page.find_status],
              api_name="add_source" if event == page.add_button.click else False)
