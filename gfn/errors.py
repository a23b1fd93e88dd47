"""User-facing error types shared by the run machinery (configuration, run directory, command
line), defined below all of them so that none imports another for its errors."""

from __future__ import annotations


class ConfigError(ValueError):
    """A user-facing configuration problem (bad value, missing file, unusable output directory):
    the command line prints it as one line plus its ``hint``, without a traceback."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.hint = hint
