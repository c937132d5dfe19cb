"""REQUIRETLS (RFC 8689): offered only with TLS, refused without it, the flag reaches handlers."""

from __future__ import annotations

import smtplib
from collections.abc import Callable
from pathlib import Path

import pytest

from smtpx import Server
from smtpx.cli import build_parser, build_server
from tests.edges.edgeutil import TLSMaterial
from tests.server.serverthread import ServerThread

MakeServer = Callable[..., ServerThread]


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSMaterial:
    return TLSMaterial(tmp_path_factory.mktemp("tls"))


def test_on_tls_it_is_offered_and_reaches_the_handler(
    make_server: MakeServer, tls: TLSMaterial
) -> None:
    srv = make_server(tls=tls.server_context(), offer_requiretls=True)
    with srv.smtp() as client:
        client.ehlo("c.test")
        assert not client.has_extn("requiretls")  # RFC 8689 4: not before TLS
        code, reply = client.docmd("MAIL FROM:<s@x.y> REQUIRETLS")
        assert (code, reply[:6]) == (530, b"5.7.10")
        client.rset()
        client.starttls(context=tls.client_context())
        client.ehlo("c.test")
        assert client.has_extn("requiretls")
        client.sendmail(
            "s@x.y", ["r@x.y"], b"Subject: t\r\n\r\nhi\r\n", mail_options=["REQUIRETLS"]
        )
        client.sendmail("s@x.y", ["r@x.y"], b"Subject: u\r\n\r\nhi\r\n")
    first, second = srv.wait_for_envelopes(2)
    assert first.requiretls
    assert not second.requiretls


def test_implicit_tls_offers_it(make_server: MakeServer, tls: TLSMaterial) -> None:
    srv = make_server(tls=tls.server_context(), tls_always_on=True, offer_requiretls=True)
    client = smtplib.SMTP_SSL(
        srv.host, srv.port, local_hostname="c.test", context=tls.client_context(), timeout=10
    )
    with client:
        client.ehlo()
        assert client.has_extn("requiretls")


def test_not_offered_unless_asked(make_server: MakeServer, tls: TLSMaterial) -> None:
    srv = make_server(tls=tls.server_context())
    with srv.smtp() as client:
        client.starttls(context=tls.client_context())
        client.ehlo("c.test")
        assert not client.has_extn("requiretls")
        code, reply = client.docmd("MAIL FROM:<s@x.y> REQUIRETLS")
        assert (code, reply[:5]) == (555, b"5.5.4")


def test_value_is_a_syntax_error(make_server: MakeServer, tls: TLSMaterial) -> None:
    srv = make_server(tls=tls.server_context(), offer_requiretls=True)
    with srv.smtp() as client:
        client.starttls(context=tls.client_context())
        client.ehlo("c.test")
        code, _ = client.docmd("MAIL FROM:<s@x.y> REQUIRETLS=YES")
        assert code == 501


def test_without_a_tls_context_it_is_a_startup_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="offer_requiretls needs a tls context"):
        Server(offer_requiretls=True)
    args = build_parser().parse_args(
        ["serve", "--offer-requiretls", "--maildir", str(tmp_path / "md")]
    )
    with pytest.raises(ValueError, match="offer_requiretls"):
        build_server(args)
