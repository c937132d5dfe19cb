"""RFC 3461 4 xtext, shared by AUTH= (``smtpx.auth``) and the DSN parameters (protocol core).

A leaf module: it imports nothing of smtpx, so the sans-IO core can use it without pulling in
``smtpx.auth`` and its thread pool.
"""

from __future__ import annotations

__all__ = ["decode_xtext", "encode_xtext"]

_HEX = "0123456789ABCDEF"


def decode_xtext(value: str, *, strict: bool = False) -> str:
    """Decode RFC 3461 4 xtext: printable ASCII but ``+`` and ``=``, and ``+XX`` hex escapes.

    Args:
        value: The encoded text.
        strict: Follow RFC 3461's grammar to the letter: hex digits upper case only, as the
            DSN parameters are parsed. Without it lower case is accepted too (the AUTH= value
            is advisory).

    Returns:
        The decoded text; the bytes must be UTF-8.

    Raises:
        ValueError: A character outside xtext (a raw ``=``, a space, a control, non-ASCII),
            a broken ``+XX``, or bytes that are not UTF-8.
    """
    hexdigits = _HEX if strict else "0123456789ABCDEFabcdef"
    if "+" not in value:
        # The common case: nothing escaped; one pass of checks at C speed.
        if not value.isascii() or not value.isprintable() or " " in value or "=" in value:
            raise ValueError("character outside xtext")
        return value
    out = bytearray()
    i, n = 0, len(value)
    while i < n:
        c = value[i]
        if c == "+":
            hexpair = value[i + 1 : i + 3]
            if len(hexpair) != 2 or any(h not in hexdigits for h in hexpair):
                raise ValueError("broken +XX escape in xtext")
            out.append(int(hexpair, 16))
            i += 3
            continue
        if not "!" <= c <= "~" or c == "=":
            raise ValueError("character outside xtext")
        out.append(ord(c))
        i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("xtext does not decode to UTF-8") from None


def encode_xtext(value: str) -> str:
    """Encode ``value`` (as UTF-8) as RFC 3461 xtext."""
    return "".join(
        chr(b) if 0x21 <= b <= 0x7E and b not in (0x2B, 0x3D) else f"+{b:02X}"
        for b in value.encode("utf-8")
    )
