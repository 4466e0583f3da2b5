"""Checks before work: everything about a run that its settings, its names and the files on this machine can
tell, settled before any model loads (a typo must not cost minutes of loading).

:func:`check_before_loading` raises :class:`autosep.errors.SettingsError` (a usage error, exit 2) for a run that
cannot do what it asks, and returns warnings for one that will run but not as the user likely expects. What only
a loaded model can tell (a hub model's files, a window length its configs do not state) is checked when it loads.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelNotAvailableError, SettingsError
from ..separator.lookup import LATENT_DIFFUSION_WINDOW_S, check_model_name, model_window
from ..taggers.settings import PlanningSettings, TaggingSettings
from .naming import RESIDUAL, unique_slugs
from .recording import is_media_file
from .settings import RunSettings

SHORT_WINDOW_S = 1.0  # below this a window holds too little of any source for the model to tell them apart
LONG_PROMPT = 200  # characters; the text encoders read the first 64-512 tokens and drop the rest


def check_before_loading(settings: RunSettings) -> list[str]:
    """Refuse (SettingsError) what cannot work; return warnings about what will work differently than asked."""
    warnings: list[str] = []
    if settings.tagged:
        _check_tagger_model(settings.tagging)
        if settings.planning.max_sources == 0 and not settings.planning.include:  # --include is kept anyway
            raise SettingsError("--max-sources 0 keeps no source, so nothing would be separated; use 1 or more, "
                                "or name the sources to keep with --include (--dry-run shows the plan)",
                                "--max-sources")
    else:
        _check_given_prompts(settings)
        warnings.extend(_ignored_with_prompts(settings))
    if not settings.dry_run:
        warnings.extend(_check_windows(settings, _check_separator(settings.models.separator)))
    return warnings


def _check_separator(model: str) -> float | None:
    """The separator's name checked; its training window when its configs are on this machine."""
    from ..separator.loading import MODEL_ALIASES, resolve_model_name

    model_id = resolve_model_name(model)
    try:
        check_model_name(model_id, list(MODEL_ALIASES), label="--model")
    except ModelNotAvailableError as exc:
        raise SettingsError(str(exc), "--model") from None
    return model_window(model_id)


def _check_windows(settings: RunSettings, window_of_model: float | None) -> list[str]:
    windows = settings.windows
    if windows.window_s is None and window_of_model is not None:
        try:
            windows.resolved(window_of_model)
        except SettingsError as exc:  # an overlap the model's own window cannot hold
            raise SettingsError(f"{exc} (the separator's own window; --window sets another)", exc.option) from None
    window = windows.window_s
    if window is None:
        return []
    warnings = []
    if window < SHORT_WINDOW_S:
        per_minute = 60 / max(window - windows.overlap_s, 1e-9)
        warnings.append(f"--window {window:g} s is very short: about {per_minute:.0f} windows per minute of audio, "
                        f"each too short for the model to tell sources apart (it was trained on "
                        f"{window_of_model or LATENT_DIFFUSION_WINDOW_S:g} s); leave --window out for its own length")
    elif window_of_model == LATENT_DIFFUSION_WINDOW_S and window > window_of_model * 1.001:
        warnings.append(f"--window {window:g} s is longer than the {window_of_model:g} s the model was trained on; it "
                        "runs, but separates best in windows of its own length (leave --window out)")
    return warnings


def _check_tagger_model(tagging: TaggingSettings) -> None:
    if tagging.model is None:
        return
    path = Path(str(tagging.model)).expanduser()
    if path.is_file() and is_media_file(path):
        raise SettingsError(f"--tagger-model {tagging.model} is an audio file, not a tagger model; give recordings "
                            "as inputs, and --tagger-model a Hugging Face id, a model folder or (for panns) a Cnn14 "
                            ".pth checkpoint", "--tagger-model")


def _check_given_prompts(settings: RunSettings) -> None:
    """With -s the stems' names are known now: --keep/--remove must name one of them; the stem check needs the
    tagger, which -s skips."""
    check = settings.check
    if check.drop_unconfirmed or check.rounds > 1:
        option = "--drop-unconfirmed" if check.drop_unconfirmed else f"--rounds {check.rounds}"
        raise SettingsError(f"{option} works on the tagger's check of each stem, and -s/--source skips the tagger; "
                            "drop -s to let autosep find the sources, or drop the option", option.split()[0])
    output = settings.output
    asked = output.keep or output.remove
    if not asked:
        return
    prompts = list(settings.sources or ())
    known = {name.casefold() for name in prompts + unique_slugs(prompts)}
    if output.render == "projected":
        known.add(RESIDUAL)
    unknown = [name for name in asked if name.strip().casefold() not in known]
    if unknown:
        flag = "--keep" if output.keep else "--remove"
        names = ", ".join(repr(p) for p in prompts) + (f", {RESIDUAL}" if RESIDUAL in known else "")
        raise SettingsError(f"{flag} {unknown[0]!r}: no source of this run is called that; the stems are {names}",
                            flag)


def _ignored_with_prompts(settings: RunSettings) -> list[str]:
    """The tagging options -s makes pointless, named so that nobody waits for an effect that cannot come."""
    ignored = []
    if settings.tagging.tagger != TaggingSettings.tagger or settings.tagging.model is not None:
        ignored.append("--tagger/--tagger-model")
    if settings.planning != PlanningSettings():
        ignored.append("the planner options (--threshold, --max-sources, --min-active, --hierarchy, --include, "
                       "--exclude, --prompts)")
    warnings = [f"{' and '.join(ignored)} have no effect with -s/--source (no tagging)"] if ignored else []
    long = [p for p in settings.sources or () if len(p) > LONG_PROMPT]
    if long:
        warnings.append(f"a -s prompt of {len(long[0])} characters ({long[0][:40]!r}...): the text encoders read "
                        "only its first few hundred tokens at most; a short phrase (\"dog barking\") works best")
    return warnings
