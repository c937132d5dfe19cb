"""One table: the EHLO keywords and every reply code of the extensions, against the RFCs.

Each row runs over a real socket and names the rule it checks. Besides the exact reply, every
code is checked against what its RFC allows for the command (``ALLOWED``) and every enhanced
code against the IANA "SMTP Enhanced Status Codes" registry (RFC 3463, RFC 5248), with a class
equal to the basic code's first digit (RFC 2034 3).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.edges.edgeutil import TLSMaterial
from tests.server.serverthread import ServerThread

MakeServer = Callable[..., ServerThread]

# Registered enhanced codes (subject.detail) used by the replies below, with their names.
REGISTRY = {
    "0.0": "Other undefined Status",
    "1.0": "Other address status",
    "1.1": "Bad destination mailbox address",
    "1.5": "Destination address valid",
    "3.4": "Message too big for system",
    "3.0": "Other or undefined mail system status",
    "5.1": "Invalid command",
    "5.2": "Syntax error",
    "5.4": "Invalid command arguments",
    "7.0": "Other or undefined security status",
    "7.10": "Encryption Needed",
}

# What each RFC allows as a reply to the command (RFC 5321 4.3.2 for the base commands).
ALLOWED: dict[str, set[str]] = {
    # RFC 3030 2 / 4: 250 per chunk; 5321 4.2.3 503 bad sequence, 501 syntax, 552 storage,
    # 550/554 refused, 451 local error, 421 closing; plus 500 for a line too long.
    "BDAT": {"250", "421", "451", "452", "500", "501", "503", "550", "552", "554"},
    "DATA": {"354", "250", "421", "451", "452", "500", "501", "503", "550", "552", "554"},
    # RFC 2033 4.1: an LMTP server answers HELO and EHLO with 500 (unrecognized).
    "HELO": {"250", "421", "500", "501", "502", "504", "550"},
    "EHLO": {"250", "421", "500", "501", "502", "504", "550"},
    "LHLO": {"250", "421", "500", "501", "502", "504", "550"},
    # RFC 5321 4.3.2 MAIL/RCPT, 4.1.1.11 555 for unrecognized parameters; RFC 3461 501 for
    # bad DSN values; RFC 8689 / 3207 530 for REQUIRETLS without TLS.
    "MAIL": {
        "250",
        "421",
        "451",
        "452",
        "455",
        "500",
        "501",
        "503",
        "530",
        "550",
        "552",
        "553",
        "555",
    },
    "RCPT": {
        "250",
        "251",
        "421",
        "451",
        "452",
        "455",
        "500",
        "501",
        "503",
        "550",
        "551",
        "552",
        "553",
        "555",
    },
    "NOOP": {"250", "421", "500"},
}

SESSION = "EHLO c.test", "MAIL FROM:<s@x.y>", "RCPT TO:<r@x.y>"
LMTP_SESSION = "LHLO c.test", "MAIL FROM:<s@x.y>", "RCPT TO:<r@x.y>", "RCPT TO:<t@x.y>"

# (id, server options, lines sent before, the command under test, expected reply, the rule)
ROWS: list[tuple[str, dict[str, Any], tuple[str, ...], str, str, str]] = [
    ("bdat-chunk", {}, SESSION, "BDAT 4\r\nab\r\n", "250 2.0.0", "RFC 3030 2: 250 per chunk"),
    ("bdat-last", {}, SESSION, "BDAT 4 LAST\r\nab\r\n", "250 2.0.0", "RFC 3030 2"),
    ("bdat-0-last", {}, SESSION, "BDAT 0 LAST\r\n", "250 2.0.0", "RFC 3030 2: BDAT 0 LAST"),
    ("bdat-no-mail", {}, ("EHLO c.test",), "BDAT 2\r\nab", "503 5.5.1", "RFC 3030 2, 5321 4.3.2"),
    ("bdat-no-rcpt", {}, SESSION[:2], "BDAT 2\r\nab", "503 5.5.1", "RFC 3030 2"),
    ("bdat-helo", {}, ("HELO c.test", "MAIL FROM:<s@x.y>", "RCPT TO:<r@x.y>"), "BDAT 1\r\na",
     "503 5.5.1", "RFC 3030 1: CHUNKING is an EHLO extension"),
    ("bdat-bad-size", {}, SESSION, "BDAT abc\r\n", "501 5.5.4", "RFC 3030 3: chunk-size 1*DIGIT"),
    ("bdat-bad-last", {}, SESSION, "BDAT 1 LATER\r\n", "501 5.5.4", "RFC 3030 3: end-marker"),
    ("bdat-huge", {"max_size": 100}, SESSION, "BDAT 101\r\n", "552 5.3.4", "RFC 1870 / 3463 5.3.4"),
    ("bdat-over", {"max_size": 100}, SESSION, "BDAT 100\r\n" + "a" * 98 + "\r\nBDAT 1 LAST\r\nb",
     "552 5.3.4", "RFC 3030 2 / RFC 1870 6.3"),
    ("data-after-bdat", {}, (*SESSION, "BDAT 4\r\nab"), "DATA\r\n", "503 5.5.1",
     "RFC 3030 2: no DATA in a BDAT transaction"),
    ("lmtp-helo", {"lmtp": True}, (), "HELO c.test\r\n", "500 5.5.1", "RFC 2033 4.1"),
    ("lmtp-ehlo", {"lmtp": True}, (), "EHLO c.test\r\n", "500 5.5.1", "RFC 2033 4.1"),
    ("lhlo-smtp", {}, (), "LHLO c.test\r\n", "500 5.5.1", "RFC 5321 4.2.4: unknown command"),
    ("lmtp-data", {"lmtp": True}, LMTP_SESSION, "DATA\r\n", "354", "RFC 2033 4.2"),
    ("dsn-bad-ret", {"dsn": True}, ("EHLO c.test",), "MAIL FROM:<s@x.y> RET=X\r\n", "501 5.5.4",
     "RFC 3461 4.3, 3463 5.5.4"),
    ("dsn-xtext-crlf", {"dsn": True}, ("EHLO c.test",), "MAIL FROM:<s@x.y> ENVID=a+0D+0A\r\n",
     "501 5.5.4", "RFC 3461 4.4"),
    ("dsn-notify", {"dsn": True}, SESSION[:2], "RCPT TO:<r@x.y> NOTIFY=NEVER,DELAY\r\n",
     "501 5.5.4", "RFC 3461 4.1"),
    ("dsn-ok", {"dsn": True}, SESSION[:2], "RCPT TO:<r@x.y> NOTIFY=SUCCESS ORCPT=rfc822;r@x.y\r\n",
     "250 2.1.5", "RFC 3461 4.1, 4.2"),
    ("dsn-off-mail", {}, ("EHLO c.test",), "MAIL FROM:<s@x.y> RET=FULL\r\n", "555 5.5.4",
     "RFC 5321 4.1.1.11 / RFC 3461 4"),
    ("dsn-off-rcpt", {}, SESSION[:2], "RCPT TO:<r@x.y> NOTIFY=NEVER\r\n", "555 5.5.4",
     "RFC 5321 4.1.1.11"),
    ("requiretls-plain", {"offer_requiretls": True, "tls": True}, ("EHLO c.test",),
     "MAIL FROM:<s@x.y> REQUIRETLS\r\n", "530 5.7.10", "RFC 8689 4.1 (TLS required)"),
    ("requiretls-off", {}, ("EHLO c.test",), "MAIL FROM:<s@x.y> REQUIRETLS\r\n", "555 5.5.4",
     "RFC 5321 4.1.1.11"),
]  # fmt: skip

# EHLO keywords per configuration, with the RFC that defines each (RFC 5321 4.1.1.1 syntax).
KEYWORDS = {
    "SIZE": "RFC 1870",
    "8BITMIME": "RFC 6152",
    "PIPELINING": "RFC 2920",
    "CHUNKING": "RFC 3030",
    "SMTPUTF8": "RFC 6531",
    "ENHANCEDSTATUSCODES": "RFC 2034",
    "DSN": "RFC 3461",
    "STARTTLS": "RFC 3207",
    "REQUIRETLS": "RFC 8689",
}
EHLO_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*\Z")


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSMaterial:
    return TLSMaterial(tmp_path_factory.mktemp("tls"))


def options(raw: dict[str, Any], tls: TLSMaterial) -> dict[str, Any]:
    opts = dict(raw, forbid_unauth_pipelining=False)
    if opts.pop("tls", False):
        opts["tls"] = tls.server_context()
    return opts


def check_code(command: str, reply: str) -> None:
    code = reply[:3]
    assert code in ALLOWED[command], f"{command}: {code} not allowed"
    if code[0] in "245" and len(reply) > 4:
        enhanced = reply[4:].split(" ")[0]
        cls, _, subject_detail = enhanced.partition(".")
        assert cls == code[0], reply  # RFC 2034 3
        assert subject_detail in REGISTRY, f"{enhanced} is not a registered code"


@pytest.mark.parametrize(
    ("options_", "before", "command", "expected", "rule"),
    [pytest.param(*row[1:], id=row[0]) for row in ROWS],
)
def test_reply_codes_follow_the_rfcs(
    make_server: MakeServer,
    tls: TLSMaterial,
    options_: dict[str, Any],
    before: tuple[str, ...],
    command: str,
    expected: str,
    rule: str,
) -> None:
    srv = make_server(**options(options_, tls))
    with srv.raw() as c:
        c.reply()
        for line in before:
            c.cmd(line.encode() + b"\r\n")
        c.send(command.encode())
        reply = c.reply().decode()
        verb = command.split(" ")[0].split("\r")[0]
        if command.startswith("BDAT 100"):  # two chunks: the second one's reply counts
            reply = c.reply().decode()
        assert reply.startswith(expected), (rule, reply)
        check_code(verb, reply)


@pytest.mark.parametrize(
    ("raw", "use_tls", "greeting", "expected"),
    [
        ({}, False, "EHLO", ["SIZE", "8BITMIME", "PIPELINING", "CHUNKING", "SMTPUTF8",
                            "ENHANCEDSTATUSCODES"]),
        ({"dsn": True}, False, "EHLO", ["SIZE", "8BITMIME", "PIPELINING", "CHUNKING", "SMTPUTF8",
                                        "ENHANCEDSTATUSCODES", "DSN"]),
        ({"tls": True, "offer_requiretls": True}, False, "EHLO",
         ["SIZE", "8BITMIME", "PIPELINING", "CHUNKING", "SMTPUTF8", "ENHANCEDSTATUSCODES",
          "STARTTLS"]),
        ({"tls": True, "offer_requiretls": True}, True, "EHLO",
         ["SIZE", "8BITMIME", "PIPELINING", "CHUNKING", "SMTPUTF8", "ENHANCEDSTATUSCODES",
          "REQUIRETLS"]),
        ({"lmtp": True, "dsn": True}, False, "LHLO",
         ["SIZE", "8BITMIME", "PIPELINING", "CHUNKING", "SMTPUTF8", "ENHANCEDSTATUSCODES",
          "DSN"]),
    ],
)  # fmt: skip
def test_ehlo_keywords_follow_the_rfcs(
    make_server: MakeServer,
    tls: TLSMaterial,
    raw: dict[str, Any],
    use_tls: bool,
    greeting: str,
    expected: list[str],
) -> None:
    opts = options(raw, tls)
    if use_tls:
        opts["tls_always_on"] = True
    srv = make_server(**opts)
    with srv.raw() as c:
        if use_tls:
            c.sock = tls.client_context().wrap_socket(c.sock, server_hostname="mx.test")
            c.file = c.sock.makefile("rb")
        assert c.reply().startswith(b"220 ")
        lines = c.cmd(f"{greeting} c.test\r\n".encode()).decode().split("\r\n")[1:-1]
    keywords = [line[4:].split(" ")[0] for line in lines]
    assert keywords == expected
    for keyword in keywords:
        assert EHLO_KEYWORD.match(keyword), keyword  # RFC 5321 4.1.1.1 ehlo-keyword
        assert keyword in KEYWORDS, f"{keyword}: no RFC registered"
    assert lines[0][4:] == f"SIZE {srv.server.max_size}"  # RFC 1870 5: the fixed limit
