"""Exceptions that carry a message meant for the user, not a traceback."""

from __future__ import annotations


class AutosepError(Exception):
    """Base class: the message says what went wrong and what to do."""


class ModelNotAvailableError(AutosepError):
    """A model is neither in the local cache nor downloadable (offline, missing, or not a model folder)."""


class DownloadError(AutosepError):
    """A file could not be downloaded, or its size or checksum did not match."""
