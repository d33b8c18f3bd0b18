"""What the plugin tells a user instead of a traceback: one line and a non-zero exit code."""

from __future__ import annotations

from http import HTTPStatus

EXIT_ERROR = 1
"""A user-facing failure: not found, refused, unreachable, bad arguments."""
EXIT_INTERNAL = 2
"""A bug in the plugin (the traceback is shown with LOOPWRIGHT_DEBUG=1)."""


class CliError(Exception):
    """A failure explained by its message."""

    def __init__(self, message: str, *, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


class ApiError(CliError):
    """The API server answered with an error Status."""

    def __init__(self, message: str, *, status: int, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason

    @property
    def not_found(self) -> bool:
        return self.status == HTTPStatus.NOT_FOUND

    @property
    def forbidden(self) -> bool:
        return self.status == HTTPStatus.FORBIDDEN
