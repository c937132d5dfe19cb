"""A handler class with every session hook; never run, only type-checked by ``mypy --strict``.

``tests/test_hooks_typing.py`` runs mypy on this file (it must pass) and on wrong variants
of it (they must fail).
"""

from __future__ import annotations

from smtpx import Address, Envelope, Response, Server
from smtpx._session import _View
from smtpx.hooks import (
    ConnectHook,
    HeloHook,
    HookedHandler,
    MailHook,
    Params,
    RcptHook,
    SessionView,
    filter_recipient_domains,
)


class Complete:
    """Async and plain hooks mixed, as a user may write them."""

    async def connect(self, session: SessionView) -> Response | None:
        return None if session.remote_addr[0] != "192.0.2.1" else Response(554, "5.7.1", "No")

    def helo(self, session: SessionView, name: str) -> Response | None:
        return None

    async def mail(self, session: SessionView, address: Address, params: Params) -> Response | None:
        return None if session.authenticated else Response(530, "5.7.0", "Authenticate")

    async def rcpt(self, session: SessionView, address: Address, params: Params) -> Response | None:
        return None if address.domain == "example.org" else Response(550, "5.1.1", "Unknown")

    async def data(self, envelope: Envelope) -> Response | None:
        return None


handler: HookedHandler = Complete()
connect: ConnectHook = Complete()
helo: HeloHook = Complete()
mail: MailHook = Complete()
rcpt: RcptHook = Complete()
from_filter: RcptHook = filter_recipient_domains("example.org")
server = Server(handler=handler, hooks=[from_filter])


def session_view(view: _View) -> SessionView:
    return view  # what the session hands to hooks is a SessionView
