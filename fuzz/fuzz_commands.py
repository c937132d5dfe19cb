"""Fuzz target: the address and ESMTP-parameter grammar (``smtpx.protocol._commands``).

Input: one command argument as text (UTF-8, invalid bytes replaced, as the core only passes
decoded lines), then a flags byte read from the end (SMTPUTF8, null path, postmaster). Every
grammar function runs on it. Only ``CommandSyntaxError`` may be raised; what is accepted must
be within the RFC 5321 4.5.3.1 lengths and safe to write into a Received header (no control,
separator or format character: issue 9 item 14; no IPv6 zone id in an address literal:
the item 11 defect reached through RFC 5321 4.1.3 literals).

Run: ``python -m fuzz.fuzz_commands`` (see fuzz/README.md).
"""

from __future__ import annotations

import re

import atheris

from fuzz._harness import Budget, Target, check, main
from fuzz._smtp import safe_text
from smtpx.protocol._commands import (
    MAX_DOMAIN,
    MAX_PATH,
    CommandSyntaxError,
    is_address_literal,
    is_domain,
    parse_domain_arg,
    parse_params,
    parse_path,
    split_path_and_params,
    xtext_decode,
)

__all__ = ["TARGET", "encode", "test_one_input"]

_KEYWORD = re.compile(r"[A-Z0-9][A-Z0-9\-]*\Z")


def encode(text: str, flags: int = 0) -> bytes:
    """A seed input: ``flags & 1`` SMTPUTF8, ``& 2`` null path allowed, ``& 4`` postmaster."""
    return text.encode("utf-8") + bytes([flags])


def _check_domain(text: str, utf8: bool) -> None:
    check(len(text) <= MAX_DOMAIN + 2, f"domain of {len(text)} characters accepted")
    check(safe_text(text), f"domain with unsafe characters accepted: {text!r}", 14)
    check(utf8 or text.isascii(), f"non-ASCII domain accepted without SMTPUTF8: {text!r}")
    if text[:6].upper() == "[IPV6:":
        check("%" not in text, f"IPv6 literal with a zone id accepted: {text!r}", 11)


def _paths(text: str, utf8: bool, allow_null: bool, allow_postmaster: bool) -> None:
    for prefix in ("FROM:", "TO:"):
        try:
            path, rest = split_path_and_params(text, prefix)
        except CommandSyntaxError:
            continue
        check(len(path) + len(rest) <= len(text), "split grew the argument")
        try:
            address = parse_path(
                path, utf8=utf8, allow_null=allow_null, allow_postmaster=allow_postmaster
            )
        except CommandSyntaxError:
            pass
        else:
            value = str(address)
            check(len(value) <= MAX_PATH, f"path of {len(value)} characters accepted")
            check(safe_text(value), f"path with unsafe characters accepted: {value!r}", 14)
            check(utf8 or value.isascii(), f"non-ASCII path accepted without SMTPUTF8: {value!r}")
            check(value != "" or allow_null, "null path accepted where it is not allowed")
            if "@" in value:
                _check_domain(address.domain, utf8)
        try:
            params = parse_params(rest)
        except CommandSyntaxError:
            continue
        for key, val in params.items():
            check(_KEYWORD.match(key) is not None, f"bad esmtp-keyword accepted: {key!r}")
            check(val is None or val != "", f"empty esmtp-value accepted for {key}")


def test_one_input(data: bytes) -> None:
    """Run every grammar function on ``data``; raise on any broken invariant."""
    fdp = atheris.FuzzedDataProvider(data)
    flags = fdp.ConsumeIntInRange(0, 255)
    text = fdp.ConsumeBytes(fdp.remaining_bytes()).decode("utf-8", "replace")
    utf8 = bool(flags & 1)
    _paths(text, utf8, bool(flags & 2), bool(flags & 4))
    try:
        name = parse_domain_arg(text)
    except CommandSyntaxError:
        pass
    else:
        _check_domain(name, True)
    if is_domain(text, utf8):
        _check_domain(text, utf8)
    if is_address_literal(text):
        _check_domain(text, utf8)
    try:
        decoded = xtext_decode(text)
    except CommandSyntaxError:
        pass
    else:
        check(len(decoded) <= len(text), "xtext decoding grew the text")


TARGET = Target(
    name="commands",
    test_one_input=test_one_input,
    budget=Budget(base_s=0.05, per_byte_s=20e-6),
    trailer=1,
    scale_bytes=8192,
    max_len=4096,
)

if __name__ == "__main__":
    main(TARGET)
