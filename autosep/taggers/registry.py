"""Every tagger autosep can load, found by name: a :class:`~autosep.taggers.base.Tagger` subclass with a ``name``
registers itself when its class is defined (``Tagger.__init_subclass__``).

The names and aliases the command line accepts, the tagger entries of ``autosep models`` and each tagger's
window grid are read from the registered classes, so adding a tagger is one module (see CONTRIBUTING.md,
"Adding a tagger"). The built-in taggers' modules are imported here so that they register; they import no
model library until a tagger is built, so asking for the names stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..errors import SettingsError

if TYPE_CHECKING:
    from ..model_files import KnownModel
    from .base import Tagger, WindowGrid

BUILTIN_MODULES = ("panns", "ast", "clap", "audio_lm")  # in the order the CLI and `autosep models` list them

_classes: dict[str, type[Tagger]] = {}  # canonical name -> class, in registration order
_aliases: dict[str, str] = {}  # alias -> canonical name


def normalise(name: str) -> str:
    """How names are compared: case, surrounding space and ``_`` against ``-`` do not matter."""
    return str(name).strip().lower().replace("_", "-")


def register(cls: type[Tagger]) -> None:
    """Add ``cls`` under its ``name`` and ``aliases``; a name taken by another tagger is a programming error.

    A class defined again under the same module and name (a module reloaded) replaces the old one.
    """
    name = normalise(cls.name)
    keys = [normalise(alias) for alias in cls.aliases]
    for key in [name, *keys]:
        owner = _classes.get(_aliases.get(key, key))
        if owner is not None and (owner.__module__, owner.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"tagger name {key!r} of {cls.__qualname__} is taken by {owner.__qualname__}")
    _classes[name] = cls
    for key in keys:
        _aliases[key] = name


def unregister(name: str) -> None:
    """Remove a tagger and its aliases (tests that define a tagger of their own clean up with this)."""
    key = _aliases.get(normalise(name), normalise(name))
    _classes.pop(key, None)
    for alias in [a for a, target in _aliases.items() if target == key]:
        del _aliases[alias]


def _load_builtins() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(f"{__package__}.{module}")


def tagger_classes() -> dict[str, type[Tagger]]:
    """Canonical name -> class, built-in taggers first."""
    _load_builtins()
    return dict(_classes)


def tagger_names() -> tuple[str, ...]:
    return tuple(tagger_classes())


def tagger_aliases() -> dict[str, str]:
    """Alias -> canonical name."""
    _load_builtins()
    return dict(_aliases)


def canonical_name(name: str) -> str:
    """The registered name ``name`` stands for; an unknown name is a usage error naming the valid ones."""
    classes = tagger_classes()
    key = normalise(name)
    key = _aliases.get(key, key)
    if key not in classes:
        aliases = ", ".join(f"{a} = {n}" for a, n in _aliases.items())
        raise SettingsError(f"unknown tagger {name!r}: choose one of {', '.join(classes)}"
                            + (f" (aliases: {aliases})" if aliases else ""), "--tagger")
    return key


def tagger_class(name: str) -> type[Tagger]:
    return tagger_classes()[canonical_name(name)]


def known_models() -> list[KnownModel]:
    """The weights each tagger loads by default, for ``autosep models``."""
    return [cls.weights for cls in tagger_classes().values() if cls.weights is not None]


def window_grids() -> dict[str, WindowGrid]:
    """Each tagger's window and hop as its class declares them (a loaded model may refine them from its
    feature extractor: ``Tagger.grid`` on the instance is what scoring uses)."""
    from .base import WindowGrid

    return {name: WindowGrid.of(cls) for name, cls in tagger_classes().items()}


def help_text() -> str:
    """One line per tagger for ``--tagger``'s help: name, aliases, window grid."""
    aliases = tagger_aliases()
    parts = []
    for name, grid in window_grids().items():
        also = [a for a, n in aliases.items() if n == name]
        parts.append(f"{name}{' (' + ', '.join(also) + ')' if also else ''}: {grid.describe()}")
    return "; ".join(parts)
