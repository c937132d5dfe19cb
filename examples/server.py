"""The Go README example, in Python: a server with options, middleware and a handler.

Run it with ``python examples/server.py`` and send it mail on 127.0.0.1:2525.
"""

from __future__ import annotations

import logging

import smtpx
from smtpx import Envelope, Response, responses
from smtpx.middleware import add_return_path, logger, recover


async def handle(envelope: Envelope) -> Response | None:
    print("Command MAIL", envelope.mail_from)
    print("Command RCPT", [str(r) for r in envelope.rcpt_to])
    print("Command DATA", envelope.data.decode("utf-8", "replace"))

    # Open the envelope: split the DATA section into header and body.
    try:
        mail = envelope.mail()
    except smtpx.MailParseError:
        return responses.FAIL_SYNTAX_ERROR

    # Headers as sent; mail.headers() gives the RFC 2047 decoded form.
    headers = mail.headers_literal()
    print("From:", headers.get("From"))
    print("To:", headers.get("To"))
    print("Subject:", headers.get("Subject"))
    print("Body:", mail.raw_body.decode("utf-8", "replace"))
    return smtpx.new_response(250, "OK")


def main() -> None:
    logging.basicConfig(level=logging.DEBUG)
    server = smtpx.Server(
        logger=logging.getLogger("example"),
        # Hostname is used in the greeting and the EHLO reply.
        hostname="example.com",
        addr="127.0.0.1:2525",
        # tls=ssl_context,  # optional: enables STARTTLS
        # Middlewares run in order: logger -> recover -> add_return_path -> handle.
        middlewares=[logger(), recover, add_return_path],
        handler=handle,
    )
    # SIGINT/SIGTERM trigger a graceful shutdown.
    server.listen_and_serve()


if __name__ == "__main__":
    main()
