"""Mail, Content, RFC 2047 decoding and address parsing beyond the Go vectors."""

from __future__ import annotations

import base64

import pytest

from smtpx import mail as mail_module
from smtpx._charsets import lookup_codec
from smtpx._mime_addr import parse_address, parse_address_list
from smtpx._mime_words import decode_header
from smtpx.address import Address
from smtpx.errors import MailParseError
from smtpx.mail import MIME_MULTIPART_MIXED, MIME_TEXT_PLAIN
from tests.mail.conftest import MakeMail


def test_raw_headers_and_body(make_mail: MakeMail) -> None:
    data = b"A: 1\r\nB: 2\r\n\r\nline1\r\n\r\nline2\r\n"
    mail = make_mail(data)
    assert mail.raw_headers == b"A: 1\r\nB: 2\r\n"
    assert mail.raw_body == b"line1\r\n\r\nline2\r\n"
    assert mail.raw_headers + b"\r\n" + mail.raw_body == data
    assert mail.utf8 is False


@pytest.mark.parametrize(
    ("data", "raw_headers", "raw_body"),
    [
        (b"A: 1\r\nB: 2\r\n", b"A: 1\r\nB: 2\r\n", b""),  # headers only: valid
        (b"A: 1", b"A: 1", b""),
        (b"A: 1\n\n", b"A: 1\n", b""),
        (b"\r\nbody", b"", b"body"),
        (b"", b"", b""),
        (b"A: b\n\nbody\r\n\r\nx", b"A: b\n", b"body\r\n\r\nx"),  # Go split at the later CRLFCRLF
    ],
)
def test_split_edge_cases(
    make_mail: MakeMail, data: bytes, raw_headers: bytes, raw_body: bytes
) -> None:
    mail = make_mail(data)
    assert (mail.raw_headers, mail.raw_body) == (raw_headers, raw_body)


def test_literal_keeps_8bit_bytes_losslessly(make_mail: MakeMail) -> None:
    mail = make_mail(b"Subject: caf\xe9 \xc3\xa9 =?utf-8?q?x?=\r\n\r\n", utf8=True)
    literal = mail.headers_literal().get("Subject")
    assert literal is not None
    assert literal.encode("utf-8", "surrogateescape") == b"caf\xe9 \xc3\xa9 =?utf-8?q?x?="
    decoded = mail.headers().get("Subject")
    assert decoded == "caf\ufffd \u00e9 x"
    assert decoded.encode("utf-8")  # always valid text


def test_headers_keep_names_and_order(make_mail: MakeMail) -> None:
    data = b"Received: 1\r\nMESSAGE-id: <a@b>\r\nReceived: 2\r\nSubject : spaced\r\n\r\n"
    headers = make_mail(data).headers()
    assert headers.keys() == ["Received", "MESSAGE-id", "Received", "Subject"]
    assert headers.get("Message-ID") == "<a@b>"
    assert headers.get_all("received") == ["1", "2"]
    # smtpx: "Subject :" is found by "Subject" (Go kept the key "Subject " unreachable).
    assert headers.get("subject") == "spaced"


def test_mail_accessors_use_decoded_headers(make_mail: MakeMail) -> None:
    data = (
        b"From: =?UTF-8?Q?Doe=2C_J?= <j@x.y>\r\n"
        b"To: a@b, =?ISO-8859-1?Q?J=F8rgen?= <j@c.d>\r\n"
        b"To: e@f\r\n"
        b"Subject: =?UTF-8?Q?caf=C3=A9?=\r\n\r\n"
    )
    mail = make_mail(data)
    assert mail.from_() == Address("j@x.y", "Doe, J")
    assert mail.to() == [Address("a@b"), Address("j@c.d", "Jørgen"), Address("e@f")]
    assert mail.get("subject") == "café"
    assert mail.get("nope") is None
    assert mail.get_all("to") == ["a@b, Jørgen <j@c.d>", "e@f"]


def test_folded_value_is_unfolded_per_rfc5322(make_mail: MakeMail) -> None:
    data = b"Subject: a\r\n  b\r\n\tc\r\nX: 1\r\n\r\n"
    assert make_mail(data).headers_literal().get("Subject") == "a  b\tc"


# --- RFC 2047 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("no words", "no words"),
        ("=?utf-8?q?a?= \t =?utf-8?q?b?=", "ab"),  # LWSP between words dropped (6.2)
        ("=?utf-8?q?a?= x =?utf-8?q?b?=", "a x b"),
        ("=?utf-8?x?a?=", "=?utf-8?x?a?="),  # unknown encoding: left as is
        ("=?utf-8?b?!!!?=", "=?utf-8?b?!!!?="),  # bad base64: left as is
        ("=?utf-8?b?YQ?=", "=?utf-8?b?YQ?="),  # unpadded base64 is invalid (as in Go)
        ("=?utf-8?q?=4?=", "=?utf-8?q?=4?="),  # truncated =XX
        ("=?utf-8?q?=c3=a9?=", "é"),  # lowercase hex accepted (Go too)
        ("=?utf-8?q?a", "=?utf-8?q?a"),  # no closing ?=
        ("=?us-ascii?q?a=FFb?=", "a\ufffdb"),
        ("=?x-unknown?q?caf=C3=A9?=", "café"),  # unknown charset: UTF-8 with replacement
        ("=?x-unknown?q?caf=E9?=", "caf\ufffd"),  # never invalid text (Go: raw bytes)
        ("=?utf-8*en?q?hi?=", "hi"),  # RFC 2231 language suffix
        ("=?utf-16?b?//5oAGkA?=", "hi"),  # BOM decides the byte order
        ("=?gb2312?b?1tDOxA==?=", "中文"),
        ("=?cp1252?q?=80?=", "€"),  # Go alias cp1252 -> windows-1252
        ("=?latin-1?q?=E9?=", "é"),  # another spelling of a listed codec
        ("=?rot13?q?nop?=", "nop"),  # not a charset: unknown, decoded as UTF-8
        ("=?utf-8?q??=", ""),
        ("a=?utf-8?q?b?=c", "abc"),
    ],
)
def test_decode_header(value: str, expected: str) -> None:
    assert decode_header(value) == expected


@pytest.mark.parametrize(
    ("label", "codec"),
    [
        ("UTF-8", "utf-8"),
        ("Shift_JIS", "cp932"),
        ("ks_c_5601", "cp949"),
        ("latin9", "iso8859_15"),
        ("TIS-620", "cp874"),
        ("utf8", "utf-8"),
        ("zlib", None),
        ("utf-7", None),
        ("nonsense", None),
    ],
)
def test_charset_lookup(label: str, codec: str | None) -> None:
    assert lookup_codec(label) == codec


# --- addresses --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a@b.c", Address("a@b.c")),
        ("<a@b.c>", Address("a@b.c")),
        ("Gogh Fir <tesst@test.com>", Address("tesst@test.com", "Gogh Fir")),
        ('"Doe, John" <j@x.y>', Address("j@x.y", "Doe, John")),
        ('"esc \\"q\\"" <j@x.y>', Address("j@x.y", 'esc "q"')),
        ("John Q. Public <jqp@x.y>", Address("jqp@x.y", "John Q. Public")),
        ("j@x.y (John Doe)", Address("j@x.y", "John Doe")),
        ("(comment) j@x.y", Address("j@x.y")),
        ("=?UTF-8?B?5byg5LiJ?= <zhang@example.com>", Address("zhang@example.com", "张三")),
        ("=?UTF-8?Q?a?= =?UTF-8?Q?b?= <x@y.z>", Address("x@y.z", "ab")),
        ('"john doe"@example.com', Address('"john doe"@example.com')),
        ('"simple"@example.com', Address("simple@example.com")),
        ("user@[192.0.2.1]", Address("user@[192.0.2.1]")),
        ("Jörg <jörg@exämple.de>", Address("jörg@exämple.de", "Jörg")),
    ],
)
def test_parse_address(value: str, expected: Address) -> None:
    assert parse_address(value) == expected


@pytest.mark.parametrize(
    "value",
    ["<hoop>", "", "a@b, c@d", "g: a@b;", "Name", '"unclosed <a@b>', "a@", "<a@b", "(x"],
)
def test_parse_address_errors(value: str) -> None:
    with pytest.raises(MailParseError):
        parse_address(value)


def test_parse_address_list() -> None:
    value = 'a@b, "C, D" <c@d>, , team: e@f, G <g@h>;, undisclosed-recipients:;'
    assert parse_address_list(value) == [
        Address("a@b"),
        Address("c@d", "C, D"),
        Address("e@f"),
        Address("g@h", "G"),
    ]
    assert parse_address_list("") == []


# --- MIME --------------------------------------------------------------------------------------


def test_body_without_content_type_is_text_plain(make_mail: MakeMail) -> None:
    # RFC 2045 5.2; Go failed with "mime: no media type".
    root = make_mail(b"Subject: hi\r\n\r\nhello\r\n").body()
    assert root.content_type() == MIME_TEXT_PLAIN
    assert root.text() == "hello\r\n"
    assert root.encoding() == "7bit"
    assert root.leaf()
    assert root.headers.get("Subject") == "hi"


def test_invalid_content_type_is_text_plain(make_mail: MakeMail) -> None:
    root = make_mail(b"Content-Type: garbage\r\n\r\nx").body()
    assert root.content_type() == MIME_TEXT_PLAIN


def test_multipart_crlf_padding_preamble_epilogue(make_mail: MakeMail) -> None:
    data = (
        b"Content-Type: Multipart/Mixed; boundary=b1\r\n\r\n"
        b"preamble\r\n"
        b"--b1  \r\n"  # transport padding
        b"Content-Transfer-Encoding: BASE64\r\n\r\n"
        + base64.encodebytes(b"first part").replace(b"\n", b"\r\n")
        + b"--b1\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"caf=E9=\r\n au lait\r\n"
        b"--b1x is not a delimiter\r\n"
        b"--b1--\r\n"
        b"epilogue\r\n"
    )
    root = make_mail(data).body()
    assert root.content_type() == MIME_MULTIPART_MIXED
    first, second = root.children
    assert first.payload() == b"first part"
    assert second.text() == "café au lait\r\n--b1x is not a delimiter"
    assert second.decode() == second.text().encode()
    assert second.charset() == "iso-8859-1"
    assert second.raw.startswith(b"Content-Type: text/plain")


def test_multipart_without_close_delimiter(make_mail: MakeMail) -> None:
    data = b'Content-Type: multipart/mixed; boundary="z"\n\n--z\n\none\n--z\n\ntwo\n'
    root = make_mail(data).body()
    assert [c.body for c in root.children] == [b"one", b"two\n"]
    assert [c.content_type() for c in root.children] == ["text/plain", "text/plain"]


def test_multipart_digest_defaults_to_message(make_mail: MakeMail) -> None:
    data = b"Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: inner\n\nhi\n--d--\n"
    (child,) = make_mail(data).body().children
    assert child.content_type() == "message/rfc822"
    assert make_mail(child.body).headers().get("Subject") == "inner"


def test_multipart_without_boundary_is_an_error(make_mail: MakeMail) -> None:
    with pytest.raises(MailParseError, match="no boundary"):
        make_mail(b"Content-Type: multipart/mixed\r\n\r\nx").body()


def test_deep_nesting_is_an_error(make_mail: MakeMail) -> None:
    depth = 70
    head = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (i, i) for i in range(depth)
    )
    with pytest.raises(MailParseError, match="nested"):
        make_mail(head + b"\nleaf\n").body()


def test_filename_falls_back_to_content_type_name(make_mail: MakeMail) -> None:
    data = (
        b'Content-Type: application/pdf; name="=?UTF-8?Q?r=C3=A9sum=C3=A9.pdf?="\r\n'
        b"Content-Disposition: attachment\r\n\r\n%PDF"
    )
    part = make_mail(data).body()
    assert part.filename() == "résumé.pdf"
    assert part.param("name") == "=?UTF-8?Q?r=C3=A9sum=C3=A9.pdf?="
    assert part.disposition() == "attachment"


def test_rfc2231_continuations(make_mail: MakeMail) -> None:
    data = (
        b"Content-Disposition: attachment;\r\n"
        b"  filename*0*=UTF-8''%E6%B5%8B;\r\n"
        b"  filename*1*=%E8%AF%95.txt\r\n\r\nx"
    )
    assert make_mail(data).body().filename() == "测试.txt"


def test_text_of_unknown_charset_is_utf8_with_replacement(make_mail: MakeMail) -> None:
    data = b"Content-Type: text/plain; charset=x-unknown\r\n\r\ncaf\xc3\xa9 \xff"
    assert make_mail(data).body().text() == "café \ufffd"


def test_mime_constants() -> None:
    assert mail_module.MIME_MESSAGE_EMAIL == "message/rfc822"
    assert mail_module.MIME_APPLICATION_OCTET == "application/octet-stream"
    assert mail_module.QUOTE_ESCAPE_HEADERS == ("from", "to", "cc", "bcc", "reply-to", "sender")
    assert set(mail_module.__all__) <= set(dir(mail_module))


def test_envelope_mail_uses_this_parser() -> None:
    from smtpx.envelope import Envelope  # noqa: PLC0415 (keeps the test near its subject)

    env = Envelope(data=b"Subject: Test\r\n\r\nbody\r\n", utf8=True)
    mail = env.mail()
    assert mail.utf8 is True
    assert mail.headers().get("Subject") == "Test"
