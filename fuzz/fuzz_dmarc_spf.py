"""Fuzz target: the DMARC and SPF record parsers, without DNS.

Input: a TXT record (UTF-8, invalid bytes replaced), then one flags byte read from the end.
``dmarc.parse_record`` may only raise ``DMARCRecordError``; the SPF record, domain-spec and
macro-string parsers only their permerror; and with ``flags & 4`` the input is also a message
whose From domain ``dmarc.header_from_domain`` must find without raising (issue 9 item 7). A
record with ``v=DMARC1`` and one valid ``p`` must parse: RFC 7489 6.3 discards a bad optional
tag instead of the record (item 21). The time budget catches regex backtracking (item 2).

Run: ``python -m fuzz.fuzz_dmarc_spf`` (see fuzz/README.md).
"""

from __future__ import annotations

import contextlib
import re

import atheris

from fuzz._harness import Budget, Finding, Target, main
from smtpx.authres import dmarc, spf

__all__ = ["TARGET", "encode", "test_one_input"]

_SPF_PREFIXES = ("", "v=spf1 ", "v=spf1 include:", "v=spf1 redirect=")
_VALID_P = re.compile(r"(?:^|;)\s*p\s*=\s*(none|quarantine|reject)\s*(?:;|\Z)", re.I)
_ANY_P = re.compile(r"(?:^|;)\s*p\s*=", re.I)
# The optional tags item 21 names; other errors (a malformed tag, a bad sp) are left to the
# RFC 7489 6.6.3 step 6 rules and not judged here.
_OPTIONAL = re.compile(r"parameter '(pct|adkim|aspf|ri|rf|fo|rua|ruf)'|in '(rua|ruf)'")


def encode(text: str, flags: int = 1) -> bytes:
    """A seed input: ``flags & 3`` picks an SPF prefix, ``& 4`` also reads it as a message."""
    return text.encode("utf-8") + bytes([flags])


def _dmarc(text: str) -> None:
    try:
        dmarc.parse_record(text)
    except dmarc.DMARCRecordError as exc:
        if (
            dmarc.is_dmarc_record(text)
            and _VALID_P.search(text)
            and len(_ANY_P.findall(text)) == 1
            and _OPTIONAL.search(str(exc))
        ):
            raise Finding(f"one bad optional tag voids a p= record {text!r}: {exc}", 21) from exc
    with contextlib.suppress(dmarc.DMARCRecordError):
        dmarc._lenient_parse(text)


def _spf(text: str) -> None:
    if spf._is_spf_record(text):
        with contextlib.suppress(spf._PermError):
            spf._parse_record(text)
    for explanation in (False, True):
        with contextlib.suppress(spf._PermError):
            spf._parse_macro_string(text, explanation=explanation)
    with contextlib.suppress(spf._PermError):
        spf._parse_domain_spec(text)
    spf._target_name(text)
    spf._valid_domain(text)


def test_one_input(data: bytes) -> None:
    """Parse ``data`` as DMARC and SPF records; raise on any broken invariant."""
    fdp = atheris.FuzzedDataProvider(data)
    flags = fdp.ConsumeIntInRange(0, 255)
    raw = fdp.ConsumeBytes(fdp.remaining_bytes())
    text = raw.decode("utf-8", "replace")
    _dmarc(text)
    _spf(_SPF_PREFIXES[flags & 3] + text)
    if flags & 4:
        try:
            dmarc.header_from_domain(raw)
        except RecursionError as exc:
            raise Finding("header_from_domain() recursed too deep", 7) from exc


TARGET = Target(
    name="dmarc_spf",
    test_one_input=test_one_input,
    budget=Budget(base_s=0.05, per_byte_s=20e-6),
    trailer=1,
    max_len=65536,
)

if __name__ == "__main__":
    main(TARGET)
