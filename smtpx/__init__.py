"""smtpx: a typed asyncio SMTP server library, the Python home of the Go package smtpx.

A ``Server`` with options, a ``Handler`` that receives an ``Envelope`` after DATA and returns a
``Response``, ``Middleware`` that wraps handlers, canned ``responses``, and ``authres``.
"""

from __future__ import annotations

from . import responses as responses
from ._impl import IMPLEMENTATION as IMPLEMENTATION
from ._impl import DataReader as DataReader
from .address import Address as Address
from .dsn import OriginalRecipient as OriginalRecipient
from .dsn import RecipientDSN as RecipientDSN
from .envelope import Envelope as Envelope
from .envelope import TLSInfo as TLSInfo
from .errors import BareLineEndingError as BareLineEndingError
from .errors import LimitError as LimitError
from .errors import MailParseError as MailParseError
from .errors import SMTPXError as SMTPXError
from .handler import NOOP_HANDLER as NOOP_HANDLER
from .handler import Handler as Handler
from .handler import HandlerFunc as HandlerFunc
from .handler import Middleware as Middleware
from .handler import SyncHandlerFunc as SyncHandlerFunc
from .handler import new_handler as new_handler
from .mail import Mail as Mail
from .protocol import COMMAND_LINE_MAX_LENGTH as COMMAND_LINE_MAX_LENGTH
from .protocol import COMMAND_VERB_MAX_LENGTH as COMMAND_VERB_MAX_LENGTH
from .responses import PerRecipient as PerRecipient
from .responses import Response as Response
from .responses import ResponseError as ResponseError
from .responses import new_response as new_response
from .responses import wrap_response as wrap_response
from .server import ClientInfo as ClientInfo
from .server import Server as Server
from .server import ServerState as ServerState

__version__ = "0.1.0"
NAME = "smtpx"
VERSION = __version__
CHARSET_DEFAULT = "default"
"""The transaction's charset before ``MAIL ... SMTPUTF8`` (Go ``CharsetDefault``)."""
CHARSET_UTF8 = "SMTPUTF8"
"""The transaction's charset after ``MAIL ... SMTPUTF8`` (Go ``CharsetUtf8``)."""


def new_data_reader(n: int, *, normalize: bool = False) -> DataReader:
    """A DATA reader that keeps at most ``n`` bytes (Go ``NewSMTPReader``).

    Feed it the bytes after the 354 reply; ``result()`` raises ``LimitError`` past ``n``.
    """
    return DataReader(n, normalize)


__all__ = [
    "CHARSET_DEFAULT",
    "CHARSET_UTF8",
    "COMMAND_LINE_MAX_LENGTH",
    "COMMAND_VERB_MAX_LENGTH",
    "IMPLEMENTATION",
    "NAME",
    "NOOP_HANDLER",
    "VERSION",
    "Address",
    "BareLineEndingError",
    "ClientInfo",
    "DataReader",
    "Envelope",
    "Handler",
    "HandlerFunc",
    "LimitError",
    "Mail",
    "MailParseError",
    "Middleware",
    "OriginalRecipient",
    "PerRecipient",
    "RecipientDSN",
    "Response",
    "ResponseError",
    "SMTPXError",
    "Server",
    "ServerState",
    "SyncHandlerFunc",
    "TLSInfo",
    "__version__",
    "new_data_reader",
    "new_handler",
    "new_response",
    "responses",
    "wrap_response",
]
