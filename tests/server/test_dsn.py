"""DSN parameters (RFC 3461, RFC 6533 for utf-8 ORCPT) over a real socket: grammar tables."""

from __future__ import annotations

from collections.abc import Callable

from smtpx import OriginalRecipient, RecipientDSN
from tests.server.serverthread import RawClient, ServerThread

MakeServer = Callable[..., ServerThread]

# (MAIL parameters, reply) with Server(dsn=True).
MAIL_ROWS: list[tuple[str, str]] = [
    ("RET=FULL", "250 2.1.0"),
    ("RET=hdrs", "250 2.1.0"),
    ("RET=BOTH", "501 5.5.4"),
    ("RET=", "501 5.5.4"),
    ("RET", "501 5.5.4"),
    ("RET=FULL RET=HDRS", "501 5.5.4"),  # duplicate
    ("ENVID=abc+2Bdef", "250 2.1.0"),
    ("ENVID=" + "x" * 100, "250 2.1.0"),
    ("ENVID=" + "x" * 101, "501 5.5.4"),  # RFC 3461 4.4: at most 100 characters
    ("ENVID=a+0D+0Ab", "501 5.5.4"),  # CR LF smuggled through xtext
    ("ENVID=a+00b", "501 5.5.4"),
    ("ENVID=a+7F", "501 5.5.4"),
    ("ENVID=a=b", "501 5.5.4"),  # a raw "=" is not xtext
    ("ENVID=a+2b", "501 5.5.4"),  # hexchar is "+" and two UPPER case hex digits
    ("ENVID=a+2", "501 5.5.4"),
    ("ENVID=caf+C3+A9", "501 5.5.4"),  # not US-ASCII
    ("ENVID", "501 5.5.4"),
    ("ENVID=a ENVID=b", "501 5.5.4"),
    ("RET=FULL ENVID=QQ314159", "250 2.1.0"),
]

# (MAIL parameters, RCPT parameters, RCPT reply).
RCPT_ROWS: list[tuple[str, str, str]] = [
    ("", "NOTIFY=NEVER", "250 2.1.5"),
    ("", "NOTIFY=never", "250 2.1.5"),
    ("", "NOTIFY=SUCCESS,FAILURE,DELAY", "250 2.1.5"),
    ("", "NOTIFY=DELAY", "250 2.1.5"),
    ("", "NOTIFY=NEVER,SUCCESS", "501 5.5.4"),  # NEVER stands alone
    ("", "NOTIFY=SUCCESS,,DELAY", "501 5.5.4"),  # no empty items
    ("", "NOTIFY=SUCCESS,", "501 5.5.4"),
    ("", "NOTIFY=,SUCCESS", "501 5.5.4"),
    ("", "NOTIFY=SUCCESS,SUCCESS", "501 5.5.4"),
    ("", "NOTIFY=BOUNCE", "501 5.5.4"),
    ("", "NOTIFY=", "501 5.5.4"),
    ("", "NOTIFY", "501 5.5.4"),
    ("", "NOTIFY=NEVER NOTIFY=NEVER", "501 5.5.4"),
    ("", "ORCPT=rfc822;a@x.y", "250 2.1.5"),
    ("", "ORCPT=RFC822;a+2Bb@x.y", "250 2.1.5"),
    ("", "ORCPT=rfc822;", "501 5.5.4"),
    ("", "ORCPT=a@x.y", "501 5.5.4"),
    ("", "ORCPT=x400;abc", "501 5.5.4"),
    ("", "ORCPT=rfc822;a+0Ab@x.y", "501 5.5.4"),
    ("", "ORCPT=rfc822;a=b@x.y", "501 5.5.4"),
    ("", "ORCPT=rfc822;" + "a" * 501, "501 5.5.4"),
    ("", "ORCPT=utf-8;a@x.y", "501 5.5.4"),  # utf-8 only with SMTPUTF8 (RFC 6533)
    ("SMTPUTF8", "ORCPT=utf-8;\u03b4@\u4f8b\u5b50.\u5e7f\u544a", "250 2.1.5"),
    ("SMTPUTF8", "ORCPT=utf-8;\\x{3B4}@x.y", "250 2.1.5"),
    ("SMTPUTF8", "ORCPT=utf-8;a\\x{0D}b@x.y", "501 5.5.4"),  # a control, escaped
    ("SMTPUTF8", "ORCPT=utf-8;a\\x{D}b@x.y", "501 5.5.4"),  # HEXPOINT: two digits at least
    ("SMTPUTF8", "ORCPT=utf-8;a\\x{202E}b@x.y", "501 5.5.4"),  # a bidi override
    ("SMTPUTF8", "ORCPT=utf-8;a\\b@x.y", "501 5.5.4"),
    ("SMTPUTF8", "ORCPT=utf-8;a+b@x.y", "501 5.5.4"),
    ("", "NOTIFY=FAILURE ORCPT=rfc822;a@x.y", "250 2.1.5"),
]


def exchange(c: RawClient, line: str) -> str:
    return c.cmd(line.encode() + b"\r\n").decode()[:9]


def test_mail_parameter_table(make_server: MakeServer) -> None:
    srv = make_server(dsn=True, max_errors=0, max_junk_commands=0)
    with srv.raw() as c:
        c.reply()
        assert "250 DSN\r\n" in c.cmd(b"EHLO c.test\r\n").decode()
        for params, reply in MAIL_ROWS:
            assert exchange(c, f"MAIL FROM:<s@x.y> {params}") == reply, params
            exchange(c, "RSET")


def test_rcpt_parameter_table(make_server: MakeServer) -> None:
    srv = make_server(dsn=True, max_errors=0, max_junk_commands=0)
    with srv.raw() as c:
        c.reply()
        c.cmd(b"EHLO c.test\r\n")
        for mail_params, params, reply in RCPT_ROWS:
            assert exchange(c, f"MAIL FROM:<s@x.y> {mail_params}").startswith("250")
            assert exchange(c, f"RCPT TO:<r@x.y> {params}") == reply, params
            exchange(c, "RSET")


def test_without_dsn_the_parameters_are_unknown(make_server: MakeServer) -> None:
    srv = make_server(max_errors=0, max_junk_commands=0)
    with srv.raw() as c:
        c.reply()
        assert b"DSN" not in c.cmd(b"EHLO c.test\r\n")
        for params in ("RET=FULL", "ENVID=x"):
            assert exchange(c, f"MAIL FROM:<s@x.y> {params}") == "555 5.5.4"
        assert exchange(c, "MAIL FROM:<s@x.y>").startswith("250")
        for params in ("NOTIFY=NEVER", "ORCPT=rfc822;a@x.y"):
            assert exchange(c, f"RCPT TO:<r@x.y> {params}") == "555 5.5.4"


def test_values_reach_the_handler_per_recipient(make_server: MakeServer) -> None:
    srv = make_server(dsn=True)
    with srv.smtp() as client:
        client.ehlo("c.test")
        client.mail("s@x.y", ["RET=HDRS", "ENVID=QQ+2B314159"])
        client.rcpt("a@x.y", ["NOTIFY=SUCCESS,DELAY", "ORCPT=rfc822;orig+2Ba@x.y"])
        client.rcpt("b@x.y")
        client.rcpt("c@x.y", ["NOTIFY=NEVER"])
        client.data(b"Subject: t\r\n\r\nhi\r\n")
    (env,) = srv.wait_for_envelopes(1)
    assert env.dsn_ret == "HDRS"
    assert env.dsn_envid == "QQ+314159"
    assert env.rcpt_dsn == [
        RecipientDSN(("SUCCESS", "DELAY"), OriginalRecipient("rfc822", "orig+a@x.y")),
        RecipientDSN(),
        RecipientDSN(("NEVER",)),
    ]
