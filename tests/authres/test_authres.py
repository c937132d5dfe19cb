"""Authentication-Results parse/format (RFC 8601), Go vectors (reference 8.4) and round trips."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import authres as pypi_authres  # test-only reader; untyped (see [tool.mypy.overrides])
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpx.authres import (
    FAIL,
    HARDFAIL,
    NEUTRAL,
    NONE,
    PASS,
    PERMERROR,
    POLICY,
    SOFTFAIL,
    TEMPERROR,
    ARCResult,
    AuthResult,
    AuthResultsParseError,
    DKIMResult,
    DMARCResult,
    DomainKeysResult,
    GenericResult,
    IPRevResult,
    Result,
    SenderIDResult,
    SPFResult,
    authserv_id_of,
    format,
    parse,
    register_method,
)

# Go msgauth_test.go vectors, in the smtpx fork's folded layout (";\r\n  " between results).
GO_VECTORS: list[tuple[str, str, list[Result]]] = [
    ("example.org;\r\n  none", "example.org", []),
    (
        "example.com;\r\n  spf=pass smtp.mailfrom=example.net",
        "example.com",
        [SPFResult(PASS, mail_from="example.net")],
    ),
    (
        "example.com;\r\n  auth=pass smtp.auth=sender@example.com;\r\n"
        "  spf=pass smtp.mailfrom=example.com",
        "example.com",
        [AuthResult(PASS, auth="sender@example.com"), SPFResult(PASS, mail_from="example.com")],
    ),
    (
        "example.com;\r\n  sender-id=pass header.from=example.com",
        "example.com",
        [SenderIDResult(PASS, header_key="from", header_value="example.com")],
    ),
    (
        "example.com;\r\n  sender-id=hardfail header.from=example.com;\r\n"
        "  dkim=pass header.i=sender@example.com",
        "example.com",
        [
            SenderIDResult(HARDFAIL, header_key="from", header_value="example.com"),
            DKIMResult(PASS, identifier="sender@example.com"),
        ],
    ),
    (
        "example.com;\r\n  auth=pass smtp.auth=sender@example.com;\r\n"
        "  spf=hardfail smtp.mailfrom=example.com",
        "example.com",
        [AuthResult(PASS, auth="sender@example.com"), SPFResult(HARDFAIL, mail_from="example.com")],
    ),
    (
        "example.com;\r\n  dkim=pass header.i=@mail-router.example.net;\r\n"
        "  dkim=fail header.i=@newyork.example.com",
        "example.com",
        [
            DKIMResult(PASS, identifier="@mail-router.example.net"),
            DKIMResult(FAIL, identifier="@newyork.example.com"),
        ],
    ),
    # Go formats DKIMResult{none} with a trailing space ("dkim=none "); smtpx never writes
    # trailing spaces, so the Format side of this vector is adapted (Parse accepts both).
    ("example.com;\r\n  dkim=none", "example.com", [DKIMResult(NONE)]),
    (
        "example.com;\r\n  spf=fail reason=bad smtp.mailfrom=example.net",
        "example.com",
        [SPFResult(FAIL, reason="bad", mail_from="example.net")],
    ),
]


@pytest.mark.parametrize(("value", "ident", "results"), GO_VECTORS)
def test_go_vectors_format(value: str, ident: str, results: list[Result]) -> None:
    assert format(ident, results) == value


@pytest.mark.parametrize(("value", "ident", "results"), GO_VECTORS)
def test_go_vectors_parse(value: str, ident: str, results: list[Result]) -> None:
    assert parse(value) == (ident, results)


@pytest.mark.parametrize(
    ("value", "ident", "results"),
    [
        ("", "", []),
        ("example.com 1; none", "example.com", []),
        (
            "example.com; \r\n \t spf=pass smtp.mailfrom=example.net",
            "example.com",
            [SPFResult(PASS, mail_from="example.net")],
        ),
        (
            "example.com; auth=pass (cram-md5) smtp.auth=sender@example.com;",
            "example.com",
            [AuthResult(PASS, auth="sender@example.com")],
        ),
        # Go's own output with the trailing space parses the same.
        ("example.com;\r\n  dkim=none ", "example.com", [DKIMResult(NONE)]),
    ],
)
def test_go_parse_only_vectors(value: str, ident: str, results: list[Result]) -> None:
    assert parse(value) == (ident, results)


def test_every_type_formats_like_go_except_arc_and_trailing_space() -> None:
    # Reference 7.1 "example of every type"; Go wrote "=pass" for ARC and "dmarc=none ;".
    value = format(
        "mx.test",
        [
            SPFResult(PASS, mail_from="a@b.c", helo="h"),
            DKIMResult(
                FAIL,
                reason='bad sig "x"',
                domain="b.c",
                identifier="@b.c",
                selector="s1",
                signature="abc+/=",
            ),
            DMARCResult(NONE),
            ARCResult(PASS, remote_ip="1.2.3.4", oldest_pass=2),
            GenericResult(PASS, method_="x-foo", param_values={"a.b": "c d"}),
            IPRevResult(PASS, ip="1.2.3.4"),
            SenderIDResult(PASS, header_key="from", header_value="x@y"),
            DomainKeysResult(PASS, domain="d", from_="f", sender="s"),
            AuthResult(PASS, auth="u@x"),
        ],
    )
    assert value == (
        "mx.test;\r\n  spf=pass smtp.helo=h smtp.mailfrom=a@b.c;\r\n"
        '  dkim=fail reason="bad sig \\"x\\"" header.b="abc+/=" header.d=b.c header.i=@b.c'
        " header.s=s1;\r\n  dmarc=none;\r\n"
        "  arc=pass header.oldest-pass=2 smtp.remote-ip=1.2.3.4;\r\n"
        '  x-foo=pass a.b="c d";\r\n  iprev=pass policy.iprev=1.2.3.4;\r\n'
        "  sender-id=pass header.from=x@y;\r\n"
        "  domainkeys=pass header.d=d header.from=f header.sender=s;\r\n  auth=pass smtp.auth=u@x"
    )
    assert not any(line.endswith(" ") for line in value.split("\r\n"))


def test_quoted_semicolons_and_nested_comments() -> None:
    ident, results = parse(
        '"mx (x) .example" (c1) 1 ; dkim = pass (good (very good)) reason="a; b (c) \\"d\\""'
        " header.d=example.com (the domain) header.b=abc+/=;"
        ' spf=softfail smtp.mailfrom="odd user"@example.com'
    )
    assert ident == "mx (x) .example"
    assert results == [
        DKIMResult(PASS, reason='a; b (c) "d"', domain="example.com", signature="abc+/="),
        SPFResult(SOFTFAIL, mail_from="odd user@example.com"),
    ]


def test_method_version_and_case() -> None:
    assert parse("MX.example; DKIM/1=PASS Header.D=Example.COM") == (
        "MX.example",
        [DKIMResult(PASS, domain="Example.COM")],
    )


@pytest.mark.parametrize(
    "value",
    [
        "example.com 2; none",  # unsupported version
        "example.com; spf",  # no "="
        "example.com; spf=",  # no result
        "example.com; spf=pass smtp.mailfrom",  # property without value
        'example.com; spf=pass reason="unterminated',
        "example.com; spf=pass (unterminated comment",
        "example.com; arc=pass header.oldest-pass=zero",
    ],
)
def test_malformed_values_are_errors(value: str) -> None:
    with pytest.raises(AuthResultsParseError):
        parse(value)


def test_authserv_id_of_reads_only_the_identifier() -> None:
    assert authserv_id_of(" mx.example.com; spf=pass (broken") == "mx.example.com"
    assert authserv_id_of('"quoted id" 1; none') == "quoted id"
    assert authserv_id_of("") is None


@pytest.mark.parametrize(
    "evil",
    ["x\r\nInjected: yes", "x\nInjected: yes", "x\rInjected", "a\x00b\x7fc", "l1\u2028l2\x85"],
)
def test_formatter_never_emits_control_characters(evil: str) -> None:
    value = format(
        evil,
        [SPFResult(FAIL, reason=evil, mail_from=evil, helo=evil), DKIMResult(PASS, evil)],
    )
    unfolded = value.replace("\r\n  ", "")
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in unfolded)
    assert "\u2028" not in value
    assert value.count("\r\n") == 2
    ident, results = parse(value)
    assert ident.startswith("x") or ident.startswith("a") or ident.startswith("l1")
    assert results[0].value == FAIL


def test_format_refuses_invalid_keywords() -> None:
    with pytest.raises(ValueError, match="result"):
        format("mx", [SPFResult("pass fail")])
    with pytest.raises(ValueError, match="method"):
        format("mx", [GenericResult(PASS, method_="bad method")])
    with pytest.raises(ValueError, match="property"):
        format("mx", [GenericResult(PASS, method_="x", param_values={"a.b.c": "v"})])
    with pytest.raises(ValueError, match="property"):
        format("mx", [GenericResult(PASS, method_="x", param_values={"no space": "v"})])


@register_method
@dataclass(frozen=True)
class _VBRResult(Result):
    """A user-defined method (RFC 6212 vbr), registered for parsing."""

    domain: str = ""
    vouchers: str = ""

    method: ClassVar[str] = "vbr"
    PARAMS: ClassVar[dict[str, str]] = {"domain": "header.md", "vouchers": "header.mv"}


def test_user_defined_result_types() -> None:
    value = format("mx", [_VBRResult(PASS, domain="example.com", vouchers="voucher.example")])
    assert value == "mx;\r\n  vbr=pass header.md=example.com header.mv=voucher.example"
    assert parse(value) == (
        "mx",
        [_VBRResult(PASS, domain="example.com", vouchers="voucher.example")],
    )
    # An unregistered method still round-trips as GenericResult.
    assert parse("mx; x-new=neutral policy.x=1") == (
        "mx",
        [GenericResult(NEUTRAL, method_="x-new", param_values={"policy.x": "1"})],
    )


# -- property test: parse(format(x)) == x ------------------------------------------------------

_RESULTS = st.sampled_from(
    [PASS, FAIL, NONE, NEUTRAL, POLICY, TEMPERROR, PERMERROR, SOFTFAIL, HARDFAIL]
)
# Any printable text (control characters are sanitised on purpose, so they cannot round-trip).
_TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=20)
_KEYWORD = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)


def _type(cls: type[Result], **fields: st.SearchStrategy[object]) -> st.SearchStrategy[Result]:
    return st.builds(cls, value=_RESULTS, reason=_TEXT, **fields)


_ANY_RESULT = st.one_of(
    _type(AuthResult, auth=_TEXT),
    _type(
        DKIMResult,
        domain=_TEXT,
        identifier=_TEXT,
        selector=_TEXT,
        signature=_TEXT,
        algorithm=_TEXT,
    ),
    _type(DomainKeysResult, domain=_TEXT, from_=_TEXT, sender=_TEXT),
    _type(IPRevResult, ip=_TEXT),
    st.builds(
        SenderIDResult,
        value=_RESULTS,
        reason=_TEXT,
        header_key=_KEYWORD,
        header_value=_TEXT.filter(bool),
    ),
    _type(SPFResult, mail_from=_TEXT, helo=_TEXT),
    _type(DMARCResult, header_from=_TEXT),
    _type(ARCResult, remote_ip=_TEXT, oldest_pass=st.integers(0, 50)),
    st.builds(
        GenericResult,
        value=_RESULTS,
        reason=_TEXT,
        method_=_KEYWORD.filter(
            lambda m: (
                m
                not in {
                    "auth",
                    "dkim",
                    "domainkeys",
                    "iprev",
                    "sender-id",
                    "spf",
                    "dmarc",
                    "arc",
                    "none",
                    "vbr",
                }
            )
        ),
        param_values=st.dictionaries(
            st.builds(lambda a, b: f"{a}.{b}", _KEYWORD, _KEYWORD), _TEXT.filter(bool), max_size=3
        ),
    ),
)


@settings(max_examples=300, deadline=None)
@given(ident=_TEXT.filter(bool), results=st.lists(_ANY_RESULT, max_size=4))
def test_round_trip(ident: str, results: list[Result]) -> None:
    value = format(ident, results)
    assert "\r\n" not in value.replace("\r\n  ", "")
    assert parse(value) == (ident, results)


def test_pypi_authres_reads_our_header() -> None:
    value = format(
        "mx.example.org",
        [
            SPFResult(PASS, reason="matched ip4", mail_from="joe@example.com", helo="mail.example"),
            DKIMResult(
                FAIL,
                reason="body hash mismatch",
                domain="example.com",
                selector="s1",
                identifier="@example.com",
                signature="abcdEFGH",
            ),
            DMARCResult(PASS, header_from="example.com"),
        ],
    )
    parsed = pypi_authres.AuthenticationResultsHeader.parse(
        "Authentication-Results: " + value.replace("\r\n", "")
    )
    assert parsed.authserv_id == "mx.example.org"
    methods = [(r.method, r.result) for r in parsed.results]
    assert methods == [("spf", "pass"), ("dkim", "fail"), ("dmarc", "pass")]
    spf, dkim, dmarc = parsed.results
    assert spf.reason == "matched ip4"
    assert {(p.type, p.name, p.value) for p in spf.properties} == {
        ("smtp", "mailfrom", "joe@example.com"),
        ("smtp", "helo", "mail.example"),
    }
    assert dkim.reason == "body hash mismatch"
    assert ("header", "d", "example.com") in {(p.type, p.name, p.value) for p in dkim.properties}
    assert [(p.type, p.name, p.value) for p in dmarc.properties] == [
        ("header", "from", "example.com")
    ]
