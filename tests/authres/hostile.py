"""Hostile DKIM inputs shared by the tests and ``bench/hostile.py`` (issue 9, items 1 and 3).

* :func:`huge_rsa_record`: a DKIM key record whose RSA modulus and exponent are both ``bits``
  long (``e = n - 2``). Nothing checks that ``n`` is a real modulus, so a verifier that does
  the maths with it (dkimpy: pure-Python ``pow(s, e, n)``) pays for a ``bits``-bit exponent on
  a ``bits``-bit modulus: 6 to 23 s at 16384 bits, holding the GIL. The record is 5.5 KB at
  16384 bits, so it comes over TCP after a truncated UDP answer (RFC 7766).
* :func:`folded_header_message`: a message whose header block holds one field folded over
  ``lines`` continuation lines (dkimpy appends each line to a bytes value: quadratic).
"""

from __future__ import annotations

import base64
import random

__all__ = ["der_rsa_spki", "folded_header_message", "huge_rsa_record"]

# AlgorithmIdentifier rsaEncryption (RFC 8017 A.1) with NULL parameters, DER.
_RSA_ALGORITHM = bytes.fromhex("300d06092a864886f70d0101010500")


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _der(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(content)) + content


def _der_int(value: int) -> bytes:
    raw = value.to_bytes(value.bit_length() // 8 + 1, "big")  # a leading 0 keeps it positive
    return _der(0x02, raw)


def der_rsa_spki(n: int, e: int) -> bytes:
    """A SubjectPublicKeyInfo holding the RSA public key (n, e), with no check of either."""
    rsa_public_key = _der(0x30, _der_int(n) + _der_int(e))
    return _der(0x30, _RSA_ALGORITHM + _der(0x03, b"\x00" + rsa_public_key))


def huge_rsa_record(bits: int = 16384, seed: int = 9) -> str:
    """A ``v=DKIM1; k=rsa; p=...`` record with a ``bits``-bit odd n and e."""
    rng = random.Random(seed)
    n = rng.getrandbits(bits) | (1 << (bits - 1)) | 1
    e = n - 2  # odd, as long as n, and below it: a key cryptography would load
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(der_rsa_spki(n, e)).decode()


def folded_header_message(lines: int, signature: bytes = b"") -> bytes:
    """``signature`` + a message with ``X-Fold:`` folded over ``lines`` lines of 3 bytes each."""
    fold = b"X-Fold: start\r\n" + b" x\r\n" * lines
    return (
        signature + b"From: mallory@example.com\r\nTo: bob@mx.test\r\nSubject: fold\r\n" + fold
    ) + b"\r\nbody\r\n"
