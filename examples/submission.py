from __future__ import annotations

import logging
import ssl
import sys

import smtpx
from smtpx import Address, Envelope, Response
from smtpx.auth import FileAuthenticator
from smtpx.hooks import Params, SessionView
from smtpx.middleware import add_received_header, logger

MAILBOXES = {"alice@example.org", "bob@example.org"}  # our domain's users; others: relay


class Submission:
    async def rcpt(self, session: SessionView, address: Address, params: Params) -> Response | None:
        if address.domain == "example.org" and address.address.lower() not in MAILBOXES:
            return Response(550, "5.1.1", "No such user here")  # at RCPT time: no backscatter
        return None

    async def data(self, envelope: Envelope) -> Response | None:
        return None  # 250: queue it; envelope.authenticated names the user


def build(cert: str, key: str, users: str, addr: str) -> smtpx.Server:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    return smtpx.Server(
        addr=addr,
        tls=tls,  # STARTTLS; AUTH is offered only after it
        authenticator=FileAuthenticator(users),  # lines made by `smtpx passwd USER`
        auth_required=True,  # MAIL before AUTH gets 530 5.7.0
        handler=Submission(),
        middlewares=[logger(), add_received_header()],  # Received: ... with ESMTPSA
    )


if __name__ == "__main__":  # python submission.py [CERT KEY USERS]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    paths = sys.argv[1:] or ["fullchain.pem", "privkey.pem", "users"]  # Let's Encrypt's names
    if len(paths) != 3:
        sys.exit("usage: python submission.py [CERT KEY USERS]")
    cert, key, users = paths
    build(cert, key, users, addr=":587").listen_and_serve()
