"""The diffusion backbones ZeroSep runs on: one module per family, each defining its :class:`Backbone` subclasses.

Importing this package imports every module in it (not starting with ``_``), which registers their families
(:mod:`.base`); the modules import torch only when a model loads, so this stays light.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import (Backbone, Conditioning, Inverted, ModelCard, SamplingRun, backbone_for, families,
                   family_for_folder, family_for_repo, model_cards)

__all__ = ["Backbone", "Conditioning", "Inverted", "ModelCard", "SamplingRun", "backbone_for", "families",
           "family_for_folder", "family_for_repo", "model_cards"]

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_") and _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")
