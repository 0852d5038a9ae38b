"""The one exception type for mistakes a user can fix (bad config, unknown profile, ...).

The CLI prints ``UserError`` as one or two lines and exits with code 2, without a traceback.
Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input; ``hint`` says what to change."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"
