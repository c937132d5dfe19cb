"""Authentication-Results grammar corners (issue 9 items 18-20) and the parser's cost."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from smtpx.authres import (
    AuthResult,
    AuthResultsParseError,
    DKIMResult,
    GenericResult,
    format,
    parse,
)
from tests.scaling import assert_linear

# RFC 8601 Appendix B.7, "Comment-Heavy Example" (unfolded with its whitespace kept).
RFC8601_B7 = (
    "foo.example.net (foobar) 1 (baz);\r\n"
    "    dkim (Because I like it) / 1 (One yay) = (wait for it) fail\r\n"
    "      policy (A dot can go here) . (like that) expired\r\n"
    "      (this surprised me) = (as I wasn't expecting it) 1362471462"
)


def test_cfws_around_the_property_dot() -> None:
    assert parse(RFC8601_B7) == ("foo.example.net", [DKIMResult("fail")])
    assert parse("mx; x-test=fail policy . expired=1362471462") == (
        "mx",
        [GenericResult("fail", method_="x-test", param_values={"policy.expired": "1362471462"})],
    )
    assert parse("mx; x=pass header(a).(b)d=example.com")[1] == [
        GenericResult("pass", method_="x", param_values={"header.d": "example.com"})
    ]


def test_auth_keeps_smtp_mailfrom() -> None:
    value = "mx.example; auth=pass smtp.auth=alice smtp.mailfrom=alice@example.com"
    result = AuthResult("pass", auth="alice", mail_from="alice@example.com")
    assert parse(value) == ("mx.example", [result])
    assert format("mx.example", [result]) == (
        "mx.example;\r\n  auth=pass smtp.auth=alice smtp.mailfrom=alice@example.com"
    )


# Fastmail-style fields with properties that have no ptype (x-tls ... version=, x-vs ... score=).
FASTMAIL_LIKE = (
    "mx6.messagingengine.com;\r\n"
    "    dkim=pass (2048-bit rsa key sha256) header.d=example.com header.i=@example.com\r\n"
    "      header.b=AbCdEf header.a=rsa-sha256 header.s=fm1 x-bits=2048;\r\n"
    "    spf=pass smtp.mailfrom=alice@example.com smtp.helo=out.example.com;\r\n"
    "    x-tls=pass version=TLSv1.2 cipher=ECDHE-RSA-AES128-GCM-SHA256 bits=128/128;\r\n"
    "    x-vs=clean score=-100 state=0"
)


def test_properties_without_ptype_survive_format() -> None:
    ident, results = parse(FASTMAIL_LIKE)
    tls = results[2]
    assert tls == GenericResult(
        "pass",
        method_="x-tls",
        param_values={
            "version": "TLSv1.2",
            "cipher": "ECDHE-RSA-AES128-GCM-SHA256",
            "bits": "128/128",
        },
    )
    written = format(ident, results)
    assert 'x-tls=pass bits="128/128" cipher=ECDHE-RSA-AES128-GCM-SHA256 version=TLSv1.2' in written
    assert parse(written) == (ident, results)


def _round_trips(value: str) -> None:
    """parse(format(parse(x))) is total, and one more round changes nothing."""
    try:
        ident, results = parse(value)
    except AuthResultsParseError:
        return
    written = format(ident, results)
    again = parse(written)
    assert format(*again) == written


_CFWS = st.sampled_from(["", " ", "\t", "\r\n ", "(c)", " (a (b) \\) c) ", '"'])
_WORDS = st.sampled_from(
    ["dkim", "spf", "auth", "arc", "x-tls", "none", "pass", "fail", "reason", "policy", "header",
     "smtp", "d", "mailfrom", "oldest-pass", "version", "TLSv1.2", "a@b.c", "1", "=", ".", ";",
     "/", '"q;x"', '""', "²", "9" * 5000, "é", "_", "-", "@", "\\"]
)  # fmt: skip
_GRAMMARISH = st.lists(st.tuples(_CFWS, _WORDS), max_size=30).map(
    lambda parts: "mx" + "".join(c + w for c, w in parts)
)


@settings(max_examples=1500, deadline=None)
@given(_GRAMMARISH)
@example("mx; x-tls=pass version=TLSv1.2")
@example("mx; arc=pass header.oldest-pass=²")
@example('""; none')
@example("")
def test_format_accepts_whatever_parse_accepts(value: str) -> None:
    _round_trips(value)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=60))
def test_format_accepts_whatever_parse_accepts_random_text(value: str) -> None:
    _round_trips("mx; " + value)


def test_parse_is_linear() -> None:
    def field(n: int) -> str:
        resinfo = (
            'x-m (c (nested) \\) c) = pass reason="a \\" quoted; string" '
            "policy (c) . (c) p=v header.d=example.com ver=1"
        )
        return "mx.example (c) 1; " + "; ".join([resinfo] * (n // 100))

    assert_linear(field, parse, n=200_000)
