"""The smtpx exception tree.

A leaf module: the pure and compiled twins import it, and it imports nothing of smtpx.
"""

from __future__ import annotations

__all__ = [
    "BareLineEndingError",
    "LimitError",
    "MailParseError",
    "NulByteError",
    "SMTPXError",
]


class SMTPXError(Exception):
    """Base class of every exception smtpx raises on purpose."""


class LimitError(SMTPXError):
    """The DATA reader's byte limit was reached ("read limit reached")."""

    def __init__(self, message: str = "read limit reached") -> None:
        super().__init__(message)


class BareLineEndingError(SMTPXError):
    """A bare CR or bare LF was found inside DATA (SMTP smuggling defence)."""

    def __init__(self, message: str = "bare CR or LF in message data") -> None:
        super().__init__(message)


class NulByteError(SMTPXError):
    """A NUL byte was found inside DATA (RFC 5322 2.3 and 3.5 forbid NUL in a message)."""

    def __init__(self, message: str = "NUL byte in message data") -> None:
        super().__init__(message)


class MailParseError(SMTPXError, ValueError):
    """A message, header or address could not be parsed."""
