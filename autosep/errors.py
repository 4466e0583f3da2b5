"""Exceptions that carry a message meant for the user, not a traceback, and the exit codes of the commands.

Exit codes (``autosep``, ``autosep tag``, ``autosep models``): 0 all done, 1 nothing could run, 2 usage error,
3 some inputs failed and the rest were done, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
"""

from __future__ import annotations

EXIT_OK, EXIT_NOTHING_RAN, EXIT_USAGE, EXIT_PARTIAL, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 3, 130, 143


class AutosepError(Exception):
    """Base class: the message says what went wrong and what to do."""


class ModelNotAvailableError(AutosepError):
    """A model is neither in the local cache nor downloadable (offline, missing, or not a model folder)."""


class DownloadError(AutosepError):
    """A file could not be downloaded, or its size or checksum did not match."""


class SettingsError(AutosepError, ValueError):
    """A setting is outside what it can be. Raised once, when the settings are built (a usage error, exit 2);
    also a ValueError, as a wrong argument to a Python function is. ``option`` names the command-line option."""

    def __init__(self, message: str, option: str | None = None):
        super().__init__(message)
        self.option = option

    def for_command_line(self) -> str:
        """The message, led by the option it is about when the message does not name it."""
        message = str(self)
        return message if not self.option or self.option in message else f"{self.option}: {message}"
