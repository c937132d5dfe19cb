"""The sans-IO SMTP server core: RFC 5321 states and limits, no sockets, no asyncio, no clocks.

Feed client bytes to ``Connection.receive_data``; take events from ``next_event`` and replies
from ``data_to_send``. Only ``smtpx._session`` drives it in the library; tests drive it directly.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from smtpx import _impl

from ._commands import CommandSyntaxError as CommandSyntaxError

# The core compiled from _connection.py (+ _connection_c.pxd) goes with the compiled twins
# (smtpx._impl decides, once); TYPE_CHECKING takes the pure branch, the typed spec.
if TYPE_CHECKING or _impl.IMPLEMENTATION == "python":
    from ._connection import Connection as Connection
    from ._connection import ProtocolError as ProtocolError
else:
    try:
        from ._connection_c import Connection as Connection
        from ._connection_c import ProtocolError as ProtocolError
    except ImportError as exc:
        if _impl.REQUIRE_EXTENSIONS:
            raise
        warnings.warn(
            f"smtpx: pure-Python fallback for the protocol core ({exc})",
            RuntimeWarning,
            stacklevel=2,
        )
        from ._connection import Connection as Connection
        from ._connection import ProtocolError as ProtocolError
from ._events import NEED_DATA as NEED_DATA
from ._events import AuthRequest as AuthRequest
from ._events import AuthResponse as AuthResponse
from ._events import CloseConnection as CloseConnection
from ._events import ConnectionClosed as ConnectionClosed
from ._events import Event as Event
from ._events import Greeted as Greeted
from ._events import MailFrom as MailFrom
from ._events import Message as Message
from ._events import NeedData as NeedData
from ._events import RcptTo as RcptTo
from ._events import StartTLS as StartTLS
from ._events import XClient as XClient
from ._state import COMMAND_LINE_MAX_LENGTH as COMMAND_LINE_MAX_LENGTH
from ._state import COMMAND_VERB_MAX_LENGTH as COMMAND_VERB_MAX_LENGTH
from ._state import ProtocolConfig as ProtocolConfig
from ._state import State as State

__all__ = [
    "COMMAND_LINE_MAX_LENGTH",
    "COMMAND_VERB_MAX_LENGTH",
    "NEED_DATA",
    "AuthRequest",
    "AuthResponse",
    "CloseConnection",
    "CommandSyntaxError",
    "Connection",
    "ConnectionClosed",
    "Event",
    "Greeted",
    "MailFrom",
    "Message",
    "NeedData",
    "ProtocolConfig",
    "ProtocolError",
    "RcptTo",
    "StartTLS",
    "State",
    "XClient",
]
