"""DKIM signing and verification (RFC 6376, RFC 8301, RFC 8463).

Verification never blocks the event loop, and one hostile message cannot stall the server:

* the key records are fetched with smtpx's async DNS layer (:mod:`smtpx.authres._dns`);
* the header section is split here, in linear time, into the raw fields that canonicalisation
  needs (dkimpy's own parser is quadratic in continuation lines), and only within two caps,
  checked before any work starts: ``max_header_bytes`` (default
  :data:`DEFAULT_MAX_HEADER_BYTES`) and ``max_header_fields`` (default
  :data:`DEFAULT_MAX_HEADER_FIELDS`); a signed message over either cap gets ``permerror``;
* the signature maths runs in OpenSSL through ``cryptography`` (RSASSA-PKCS1-v1_5 and
  Ed25519), never in dkimpy's pure-Python ``pow()``; RSA keys longer than
  :data:`MAX_RSA_BITS` or with an exponent above :data:`MAX_RSA_EXPONENT` are refused before
  any arithmetic (RFC 8301 3.2 asks verifiers to handle 1024 to 4096 bits) -> ``permerror``;
* hashing and verifying run on a small thread pool of their own (:func:`executor`), separate
  from the event loop's default executor, so that a handler's ``to_thread`` work (the Maildir
  store) never queues behind them; a job still queued when its check is abandoned is dropped.

dkimpy is used for the RFC 6376 3.4 canonicalisation algorithms and for signing only.

Every signature and key record is checked here, so that:

* ``rsa-sha1`` signatures are refused (RFC 8301 3.1) -> ``permerror``;
* a key record's ``h=`` list must allow sha256 (RFC 6376 3.6.1) -> ``permerror`` otherwise;
* a missing key record (NXDOMAIN / no TXT) is ``permerror`` (RFC 6376 6.1.2), not ``fail``;
* a DNS timeout or SERVFAIL is ``temperror`` (RFC 8601 2.7.1);
* signatures with ``l=`` are not accepted unless ``allow_body_length=True`` -> ``policy``
  (RFC 6376 8.2 explains the risk; RFC 8601 2.7.1 ``policy`` is "signed, but not acceptable
  to the ADMD");
* RSA keys shorter than 1024 bits are refused (RFC 8301 3.2) -> ``permerror``.

``fail`` is kept for signatures that are well formed, with a usable key, whose body hash or
signature does not verify (RFC 8601 2.7.1).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import datetime
import functools
import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from dataclasses import replace as _replace
from typing import BinaryIO, TypeVar

import dkim
import dns.asyncresolver
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from smtpx.errors import MailParseError

from . import FAIL, PASS, PERMERROR, POLICY, TEMPERROR, DKIMResult, _dns

__all__ = [
    "ALGORITHM_ED25519_SHA256",
    "ALGORITHM_RSA_SHA256",
    "DEFAULT_MAX_HEADER_BYTES",
    "DEFAULT_MAX_HEADER_FIELDS",
    "DEFAULT_MAX_VERIFICATIONS",
    "EXECUTOR_WORKERS",
    "MAX_RSA_BITS",
    "MAX_RSA_EXPONENT",
    "DKIMSignError",
    "Verification",
    "executor",
    "sign",
    "verify",
]

ALGORITHM_RSA_SHA256 = "rsa-sha256"
ALGORITHM_ED25519_SHA256 = "ed25519-sha256"
DEFAULT_MAX_VERIFICATIONS = 5
"""Signatures verified per message; later ones are ignored (RFC 6376 6.1 lets verifiers limit)."""
DEFAULT_MAX_HEADER_BYTES = 256 * 1024
"""Largest header section (bytes up to the empty line) a signature is verified in.

Honest header sections are a few KiB, long Received chains some tens; Exchange Online refuses
mail whose header is over 256 KiB. A signed message above the cap gets ``permerror``."""
DEFAULT_MAX_HEADER_FIELDS = 1000
"""Most header fields (mbox ``From`` lines included) a signature is verified among."""
MAX_RSA_BITS = 4096
"""Longest RSA modulus accepted. RFC 8301 3.2: verifiers must handle 1024 to 4096 bits; a longer
key only makes each verification dearer for the receiver (``permerror``)."""
MAX_RSA_EXPONENT = 2**32
"""Largest RSA public exponent accepted (65537 in practice; ``permerror`` above)."""
EXECUTOR_WORKERS = 2
"""Threads of the pool :func:`executor` returns."""

_log = logging.getLogger("smtpx.authres.dkim")
_T = TypeVar("_T")

_KEY_TYPE = {ALGORITHM_RSA_SHA256: "rsa", ALGORITHM_ED25519_SHA256: "ed25519"}
# RFC 6376 3.5 required tags.
_REQUIRED = ("v", "a", "b", "bh", "d", "h", "s")
# PKCS#8 wrapping of an Ed25519 private key (RFC 8410 7): fixed 16-byte prefix, then the seed.
_ED25519_PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
# RFC 6376 3.5 t=: dkimpy's leeway for a signer's clock running ahead (10 hours), kept.
_CLOCK_SLOP = 36000
# Where one header field ends and the next begins: an LF not followed by SP or HTAB (RFC 5322
# 2.2.3). A plain search, no repetition: Python's re grows a stack per repetition of a group,
# which made a field regex with a (continuation line)* part superlinear on 500,000 lines.
_FIELD_END = re.compile(rb"\n(?![ \t])")
# A field's name (printable ASCII but ":", RFC 5322 2.2) and its colon, at the field's start.
_NAME = re.compile(rb"[!-9;-~]+:")
# A line start (after LF) that opens neither a field, a continuation nor an mbox "From " line.
_BAD_LINE = re.compile(rb"\n(?![ \t]|[!-9;-~]+:|From )")
_PublicKey = rsa.RSAPublicKey | ed25519.Ed25519PublicKey
# Applied to LF + the lowercased header section: a literal prefix, so the search is fast.
_DKIM_SIGNATURE = re.compile(rb"\ndkim-signature[ \t]*:")


class DKIMSignError(ValueError):
    """``sign`` was given options it cannot sign with."""


@dataclass(frozen=True)
class Verification:
    """The outcome for one DKIM-Signature field.

    Attributes:
        domain: The ``d=`` signing domain.
        selector: The ``s=`` selector.
        identifier: The ``i=`` agent identifier (default ``@`` + domain).
        signature: The first 8 characters of ``b=`` (RFC 6008 ``header.b``).
        algorithm: The ``a=`` value.
        header_keys: The ``h=`` field names, as written.
        time: ``t=``, if present.
        expiration: ``x=``, if present.
        result: ``pass``, ``fail``, ``policy``, ``neutral``, ``temperror`` or ``permerror``
            (RFC 8601 2.7.1).
        reason: Why it did not pass ("" on pass).
    """

    domain: str = ""
    selector: str = ""
    identifier: str = ""
    signature: str = ""
    algorithm: str = ""
    header_keys: tuple[str, ...] = ()
    time: datetime.datetime | None = None
    expiration: datetime.datetime | None = None
    result: str = PERMERROR
    reason: str = ""

    @property
    def passed(self) -> bool:
        """True if the signature verified."""
        return self.result == PASS

    def to_result(self) -> DKIMResult:
        """The Authentication-Results entry for this verification."""
        return DKIMResult(
            value=self.result,
            reason=self.reason,
            domain=self.domain,
            identifier=self.identifier,
            selector=self.selector,
            signature=self.signature,
            algorithm=self.algorithm,
        )


class _SigError(Exception):
    def __init__(self, result: str, reason: str) -> None:
        super().__init__(reason)
        self.result = result
        self.reason = reason


def _tags(raw: str, what: str) -> dict[str, str]:
    """RFC 6376 3.2 tag-list; values have their folding whitespace removed by the caller."""
    tags: dict[str, str] = {}
    for spec in raw.split(";"):
        if not spec.strip():
            continue  # a trailing ";" is allowed
        name, sep, value = spec.partition("=")
        name = name.strip()
        if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
            raise _SigError(PERMERROR, f"malformed {what} tag list")
        if name in tags:
            raise _SigError(PERMERROR, f"duplicate tag {name}= in {what}")
        tags[name] = value.strip()
    return tags


def _unix(value: str | None, tag: str) -> datetime.datetime | None:
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()):
        raise _SigError(PERMERROR, f"{tag}= is not a decimal number")
    try:
        return datetime.datetime.fromtimestamp(int(value), datetime.timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise _SigError(PERMERROR, f"{tag}= is out of range") from None


@dataclass
class _Sig:
    """Pre-checked signature, or the Verification that already settles it."""

    position: int
    verification: Verification
    tags: dict[str, str] = field(default_factory=dict)
    key_name: str = ""
    settled: bool = False


@dataclass(frozen=True)
class _Job:
    """What the worker thread needs for one signature: all checks on the loop are done."""

    index: int
    position: int
    header_keys: tuple[str, ...]
    canonicalization: tuple[str, str]
    body_length: int | None
    body_hash: bytes
    signature: bytes
    key: _PublicKey


def _describe(field_index: int, value: str, *, allow_body_length: bool) -> _Sig:
    unfolded = re.sub(r"[ \t\r\n]+", " ", value)
    try:
        tags = _tags(unfolded, "signature")
    except _SigError as exc:
        return _Sig(field_index, Verification(result=exc.result, reason=exc.reason), settled=True)
    b = re.sub(r"\s+", "", tags.get("b", ""))
    domain = tags.get("d", "")
    base = Verification(
        domain=domain,
        selector=tags.get("s", ""),
        identifier=tags.get("i", "@" + domain if domain else ""),
        signature=b[:8],
        algorithm=tags.get("a", "").lower(),
        header_keys=tuple(
            k.strip() for k in re.sub(r"\s+", "", tags.get("h", "")).split(":") if k.strip()
        ),
    )
    try:
        base = _replace(base, time=_unix(tags.get("t"), "t"), expiration=_unix(tags.get("x"), "x"))
        _check_signature(tags, base, allow_body_length=allow_body_length)
    except _SigError as exc:
        return _Sig(field_index, _replace(base, result=exc.result, reason=exc.reason), settled=True)
    name = f"{base.selector}._domainkey.{base.domain}".lower()
    return _Sig(field_index, base, tags=tags, key_name=name)


def _base64(value: str, tag: str) -> bytes:
    compact = re.sub(r"\s+", "", value)
    try:
        decoded = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise _SigError(PERMERROR, f"{tag}= is not valid base64") from None
    if not decoded:
        raise _SigError(PERMERROR, f"{tag}= is empty")
    return decoded


def _canonicalization(tags: Mapping[str, str]) -> tuple[str, str]:
    # RFC 6376 3.5 c=: "header/body", each simple or relaxed; a lone value is the header's.
    header, _, body = tags.get("c", "simple/simple").lower().partition("/")
    body = body or "simple"
    if header not in ("simple", "relaxed") or body not in ("simple", "relaxed"):
        raise _SigError(PERMERROR, f"unsupported canonicalization c={tags['c']}")
    return header, body


def _check_signature(tags: Mapping[str, str], v: Verification, *, allow_body_length: bool) -> None:
    for name in _REQUIRED:
        if name not in tags:
            raise _SigError(PERMERROR, f"signature is missing the {name}= tag")
    if tags["v"] != "1":
        raise _SigError(PERMERROR, f"unsupported signature version v={tags['v']}")
    if v.algorithm == "rsa-sha1":
        # RFC 8301 3.1: verifiers MUST NOT consider rsa-sha1 signatures valid.
        raise _SigError(PERMERROR, "rsa-sha1 signatures are not accepted (RFC 8301)")
    if v.algorithm not in _KEY_TYPE:
        raise _SigError(PERMERROR, f"unsupported algorithm a={v.algorithm}")
    if not v.domain or not v.selector:
        raise _SigError(PERMERROR, "empty d= or s= tag")
    # RFC 6376 3.5 i=: the domain of i= must be d= or a subdomain of it (case-insensitive).
    ident_domain = v.identifier.rpartition("@")[2].lower()
    d = v.domain.lower()
    if "@" not in v.identifier or not (ident_domain == d or ident_domain.endswith("." + d)):
        raise _SigError(PERMERROR, "i= is not within the d= domain")
    if "from" not in (k.lower() for k in v.header_keys):
        raise _SigError(PERMERROR, "h= does not include From (RFC 6376 5.4)")
    if "l" in tags and not allow_body_length:
        raise _SigError(POLICY, "body length limit l= is not accepted")
    if "l" in tags and not re.fullmatch(r"[0-9]{1,76}", tags["l"]):
        raise _SigError(PERMERROR, "l= is not a decimal number")
    if "q" in tags and "dns/txt" not in [q.strip() for q in tags["q"].split(":")]:
        raise _SigError(PERMERROR, f"unsupported query method q={tags['q']}")
    _canonicalization(tags)
    _base64(tags["bh"], "bh")
    _base64(tags["b"], "b")
    now = datetime.datetime.now(datetime.timezone.utc)
    if v.expiration is not None and v.expiration < now:
        # RFC 6376 3.5 x=: an expired signature is treated as failing (PERMFAIL).
        raise _SigError(PERMERROR, "signature expired")
    if v.expiration is not None and v.time is not None and v.expiration < v.time:
        raise _SigError(PERMERROR, "x= is before t=")
    if v.time is not None and v.time > now + datetime.timedelta(seconds=_CLOCK_SLOP):
        raise _SigError(PERMERROR, "t= is in the future")


def _check_key(record: str, v: Verification, min_rsa_bits: int) -> _PublicKey:
    """RFC 6376 3.6.1 key record checks; returns the key, refused when too costly to use."""
    try:
        tags = _tags(record, "key record")
    except _SigError:
        raise _SigError(PERMERROR, "malformed key record") from None
    if tags.get("v", "DKIM1") != "DKIM1":
        raise _SigError(PERMERROR, "key record has an unsupported version")
    if "p" not in tags:
        raise _SigError(PERMERROR, "key record has no p= tag")
    p = re.sub(r"\s+", "", tags["p"])
    if not p:
        raise _SigError(PERMERROR, "key revoked")  # RFC 6376 3.6.1: empty p= means revoked
    key_type = tags.get("k", "rsa").lower()
    if key_type != _KEY_TYPE[v.algorithm]:
        raise _SigError(PERMERROR, f"key type k={key_type} does not match a={v.algorithm}")
    if "h" in tags:
        allowed = [h.strip().lower() for h in tags["h"].split(":")]
        if "sha256" not in allowed:
            raise _SigError(PERMERROR, "key record h= does not allow sha256")
    if "s" in tags:
        services = [s.strip() for s in tags["s"].split(":")]
        if "*" not in services and "email" not in services:
            raise _SigError(PERMERROR, "key record is not for email (s=)")
    # RFC 6376 3.6.1 t=s: the i= domain must equal d=, no subdomains.
    strict = "s" in [f.strip() for f in tags.get("t", "").split(":")]
    if strict and v.identifier.rpartition("@")[2].lower() != v.domain.lower():
        raise _SigError(PERMERROR, "key record t=s forbids a subdomain in i=")
    try:
        der = base64.b64decode(p, validate=True)
    except (binascii.Error, ValueError):
        raise _SigError(PERMERROR, "key record p= is not base64") from None
    if key_type == "ed25519":
        # RFC 8463 4.2: p= is the raw 32-byte public key.
        if len(der) != 32:
            raise _SigError(PERMERROR, "ed25519 key is not 32 bytes")
        return ed25519.Ed25519PublicKey.from_public_bytes(der)
    # Parsing only copies the numbers (no arithmetic): SubjectPublicKeyInfo or a bare
    # RFC 8017 RSAPublicKey, both seen in DKIM records. cryptography refuses e < 3 or e >= n.
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, TypeError, NotImplementedError):
        raise _SigError(PERMERROR, "key record p= is not an RSA public key") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise _SigError(PERMERROR, "key record p= is not an RSA public key")
    bits = key.key_size
    if bits < min_rsa_bits:
        raise _SigError(PERMERROR, f"RSA key too short: {bits} bits")
    if bits > MAX_RSA_BITS:
        raise _SigError(PERMERROR, f"RSA key too long: {bits} bits (at most {MAX_RSA_BITS})")
    if key.public_numbers().e > MAX_RSA_EXPONENT:
        raise _SigError(PERMERROR, "RSA public exponent too large (at most 2^32)")
    return key


async def _fetch_key(
    resolver: dns.asyncresolver.Resolver, name: str
) -> tuple[str, str | _SigError]:
    try:
        records = await _dns.lookup_txt(resolver, name)
    except _dns.DNSTempError as exc:
        return name, _SigError(TEMPERROR, f"key lookup failed: {exc}")
    except _dns.DNSPermError as exc:
        return name, _SigError(PERMERROR, f"invalid key name: {exc}")
    if not records:
        # RFC 6376 6.1.2 step 3: NXDOMAIN or no key record is PERMFAIL (no key for signature).
        return name, _SigError(PERMERROR, "no key record found")
    if len(records) > 1:
        return name, _SigError(PERMERROR, "multiple key records found")
    return name, records[0]


# -- the header section --------------------------------------------------------------------


def _header_end(message: bytes) -> tuple[int, int]:
    """(end of the header section, start of the body): the first empty line ends the header.

    Lines end with LF or CRLF, as in smtpx's header parser (``smtpx._headers_py``) and dkimpy.
    Without an empty line the whole message is header and the body is empty.
    """
    if message[:1] == b"\n":
        return 0, 1
    if message[:2] == b"\r\n":
        return 0, 2
    crlf = message.find(b"\n\r\n")
    lf = message.find(b"\n\n", 0, len(message) if crlf < 0 else crlf + 2)
    if lf >= 0:
        return lf + 1, lf + 2
    if crlf >= 0:
        return crlf + 1, crlf + 3
    return len(message), len(message)


def _over_caps(block: bytes, max_bytes: int, max_fields: int) -> str:
    """Why ``block`` is over a cap ("" if not). Only C-speed scans: safe on the event loop."""
    if len(block) > max_bytes:
        return f"header section over {max_bytes} bytes: not verified"
    lines = block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
    folded = block.count(b"\n ") + block.count(b"\n\t") + (block[:1] in (b" ", b"\t"))
    if lines - folded > max_fields:
        return f"more than {max_fields} header fields: not verified"
    return ""


def _with_lf(block: bytes) -> bytes:
    return block + b"\n" if block and not block.endswith(b"\n") else block


def _split(message: bytes, end: int, body_start: int) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The header fields as (name, raw value) and the body, lines ending in CRLF (as dkimpy).

    A value is everything after the colon, folding kept, every line end made CRLF: what the
    RFC 6376 3.4.1 "simple" algorithm hashes. Linear in the message; runs in the worker.

    Raises:
        MailParseError: A line is neither a field, a continuation nor an mbox ``From`` line.
    """
    block = _with_lf(message[:end])
    if block[:1] in (b" ", b"\t"):
        raise MailParseError("malformed message header: starts with a continuation line")
    fields: list[tuple[bytes, bytes]] = []
    start = 0
    while start < len(block):
        # Field ends are found in C; Python runs once per field (at most max_header_fields).
        m = _FIELD_END.search(block, start, len(block) - 1)
        stop = len(block) if m is None else m.end()
        name = _NAME.match(block, start, stop)
        if name is not None:
            value = block[name.end() : stop].replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            fields.append((block[start : name.end() - 1], value))
        elif not block.startswith(b"From ", start):  # an mbox separator is skipped, as dkimpy
            line = block[start : min(stop, start + 40)]
            raise MailParseError(f"malformed message header line: {line!r}")
        start = stop
    body = message[body_start:].replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return fields, body


# -- the body, streamed ----------------------------------------------------------------------

# A run of white space that is not one SP already (a lone SP, the common case, is left alone,
# which keeps the number of matches low). Each alternative is greedy and needs nothing after
# the run: no backtracking.
_WSP_RUN = re.compile(rb"\t[\t ]*| [\t ]+")
# Bytes of a spooled body read per step, in the worker thread.
BODY_CHUNK = 256 * 1024


def _trailing_crlfs(data: bytes) -> int:
    """How many CRLF pairs end ``data``; ``data`` has no bare LF (every LF follows a CR).

    Found with C-speed scans: in the run of CR and LF bytes that ends ``data``, the pairs start
    after the last CR CR (a bare CR) there.
    """
    run = len(data) - len(data.rstrip(b"\r\n"))
    if not run or data.endswith(b"\r"):
        return 0  # a bare CR ends it (a white space run after it was held back)
    tail = data[len(data) - run :]
    bare = tail.rfind(b"\r\r")
    return (run if bare < 0 else run - bare - 1) // 2


class _BodyCanon:
    """RFC 6376 3.4.3 / 3.4.4 body canonicalisation, fed in pieces cut anywhere; hashes it.

    Gives the bytes dkimpy's ``canonicalize_body`` gives for the whole body after smtpx's line
    end normalisation (each bare LF read as CRLF, a bare CR kept), up to ``length`` bytes
    (``l=``). What a cut can split is held between pieces: a CR (half of a CRLF?), a run of
    white space (relaxed: dropped before CRLF, else one SP), and the CRLFs at the end so far
    (empty lines at the end of the body are not hashed), kept as a count, never as bytes.
    Time is linear in the body: only C-speed scans and one regex without backtracking.
    """

    __slots__ = ("_cr", "_crlfs", "_hash", "_left", "_relaxed", "_sent", "_wsp")

    def __init__(self, relaxed: bool, length: int | None) -> None:
        self._relaxed = relaxed
        self._left = length  # bytes still hashed when l= is given
        self._hash = hashlib.sha256()
        self._cr = False  # a CR ended the last piece
        self._crlfs = 0  # CRLFs held at the end
        self._wsp = False  # relaxed: white space held after them
        self._sent = False  # anything hashed yet

    def _emit(self, data: bytes) -> None:
        if not data:
            return
        self._sent = True
        if self._left is not None:
            if self._left <= 0:
                return
            data = data[: self._left]
            self._left -= len(data)
        self._hash.update(data)

    def _emit_crlfs(self) -> None:
        count, self._crlfs = self._crlfs, 0
        while count:  # in bounded pieces: a million empty lines cost no million-line object
            step = min(count, 32768)
            self._emit(b"\r\n" * step)
            count -= step

    def feed(self, piece: bytes, *, final: bool = False) -> None:
        """Canonicalise the next piece of the body (``final``: a held CR is judged now)."""
        if self._cr:
            piece = b"\r" + piece
            self._cr = False
        if piece.endswith(b"\r") and not final:
            piece = piece[:-1]
            self._cr = True
        if not piece:
            return
        data = piece.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        if self._relaxed:
            if self._wsp:
                data = b" " + data
            # RFC 6376 3.4.4: WSP runs become one SP, and WSP at a line end goes. Compressing
            # first makes the second a plain replace (no regex backtracking over long runs).
            data = _WSP_RUN.sub(b" ", data).replace(b" \r\n", b"\r\n")
            self._wsp = data.endswith(b" ")
            if self._wsp:
                data = data[:-1]
        held = _trailing_crlfs(data)
        head = data[: len(data) - 2 * held]
        if head:
            self._emit_crlfs()
            self._emit(head)
        self._crlfs += held

    def digest(self) -> bytes:
        """The SHA-256 of the canonical body, after the last piece."""
        if self._cr:
            self.feed(b"", final=True)
        if self._relaxed and self._wsp:
            # White space after the last line break: dkimpy keeps it (as one SP), then adds
            # the CRLF a body that does not end with one gets.
            self._emit_crlfs()
            self._emit(b" \r\n")
        elif self._relaxed and not self._sent:
            pass  # RFC 6376 3.4.4: an empty body (or only empty lines) hashes as nothing
        else:
            # RFC 6376 3.4.3 / 3.4.4: empty lines at the end go; the body ends with one CRLF.
            self._crlfs = 0
            self._emit(b"\r\n")
        return self._hash.digest()


def _stream_body_hashes(
    open_body: Callable[[], BinaryIO], offset: int, keys: Sequence[tuple[str, int | None]]
) -> dict[tuple[str, int | None], bytes]:
    """One pass over the body in ``open_body()`` from ``offset``: a hash per (canon, l=)."""
    canons = {key: _BodyCanon(key[0] == "relaxed", key[1]) for key in keys}
    with open_body() as f:
        f.seek(offset)
        while piece := f.read(BODY_CHUNK):
            for canon in canons.values():
                canon.feed(piece)
    return {key: canon.digest() for key, canon in canons.items()}


# -- the maths, in the worker thread ---------------------------------------------------------


def _without_b_value(value: bytes) -> bytes:
    """The signature field value with the b= tag's value (and its white space) deleted.

    RFC 6376 3.5 b= and 3.7 step 2. Tag values hold no ";", so a split finds every tag.
    """
    specs = value.split(b";")
    for i, spec in enumerate(specs):
        name, eq, _ = spec.partition(b"=")
        if eq and name.strip() == b"b":
            specs[i] = name + b"="
            break
    return b";".join(specs)


_COMPRESS = re.compile(rb"[\t ]+")


def _canon_header(algorithm: str, name: bytes, value: bytes) -> bytes:
    if algorithm == "simple":  # RFC 6376 3.4.1: as is
        return name + b":" + value
    # RFC 6376 3.4.2: lowercase name, unfold, compress WSP, strip; then CRLF.
    unfolded = value.replace(b"\r\n", b"").replace(b"\n", b"")
    # bytes.strip() as dkimpy (and Go's TrimSpace): VT and FF go too, not only WSP.
    return name.lower() + b":" + _COMPRESS.sub(b" ", unfolded).strip() + b"\r\n"


def _select(fields: Sequence[tuple[bytes, bytes]], keys: Sequence[str]) -> list[int]:
    """RFC 6376 5.4.2: each h= name takes the next field of that name from the bottom up.

    dkimpy's loop rescans the header per name (names x fields); this is linear.
    """
    by_name: dict[bytes, list[int]] = {}
    for i, (name, _) in enumerate(fields):
        by_name.setdefault(name.lower(), []).append(i)
    chosen: list[int] = []
    for key in keys:
        stack = by_name.get(key.lower().encode("ascii", "replace"))
        if stack:
            chosen.append(stack.pop())
    return chosen


def _verify_jobs(
    fields: Sequence[tuple[bytes, bytes]],
    body: bytes | tuple[Callable[[], BinaryIO], int],
    jobs: Sequence[_Job],
) -> dict[int, tuple[str, str]]:
    """Body hash, header hash and signature of each job: (result, reason) by job index.

    ``body`` is the body, or (a function opening the message, the body's offset in it): a
    spooled message's body is then hashed in pieces, never read whole.
    """
    body_hashes: dict[tuple[str, int | None], bytes] = {}
    if not isinstance(body, bytes):
        wanted = list(dict.fromkeys((job.canonicalization[1], job.body_length) for job in jobs))
        body_hashes = _stream_body_hashes(body[0], body[1], wanted)
    out: dict[int, tuple[str, str]] = {}
    for job in jobs:
        head_canon, body_canon = job.canonicalization
        body_key = (body_canon, job.body_length)
        if body_key not in body_hashes:
            assert isinstance(body, bytes)
            policy = dkim.CanonicalizationPolicy.from_c_value(f"simple/{body_canon}".encode())
            canon = policy.canonicalize_body(body)
            if job.body_length is not None:
                canon = canon[: job.body_length]
            body_hashes[body_key] = hashlib.sha256(canon).digest()
        if body_hashes[body_key] != job.body_hash:
            out[job.index] = (FAIL, "body hash mismatch")
            continue
        keys = list(job.header_keys)
        if "from" in (k.lower() for k in keys):
            # As dkimpy (its bug 644046): an extra, unsigned From above the signed ones is
            # hashed too, so prepending a second From breaks the signature.
            keys.append("from")
        parts = [_canon_header(head_canon, *fields[i]) for i in _select(fields, keys)]
        sig_name, sig_value = fields[job.position]
        own = _canon_header(head_canon, sig_name, _without_b_value(sig_value))
        # RFC 6376 3.7: the signature field is hashed last, without its trailing CRLF.
        parts.append(own[:-2] if own.endswith(b"\r\n") else own)
        data = b"".join(parts)
        try:
            if isinstance(job.key, rsa.RSAPublicKey):
                job.key.verify(job.signature, data, padding.PKCS1v15(), hashes.SHA256())
            else:
                # RFC 8463 3: Ed25519 signs the SHA-256 hash of the header data.
                job.key.verify(job.signature, hashlib.sha256(data).digest())
        except InvalidSignature:
            out[job.index] = (FAIL, "signature did not verify")
        else:
            out[job.index] = (PASS, "")
    return out


# -- the thread pool -------------------------------------------------------------------------

_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def executor() -> concurrent.futures.Executor:
    """The thread pool DKIM verification runs on: :data:`EXECUTOR_WORKERS` threads, shared.

    It is not the event loop's default executor, which ``asyncio.to_thread`` and synchronous
    handlers (``smtpx serve``'s Maildir store) use: a burst of signed mail never delays
    storing an honest one. Each job in it is bounded by the caps of :func:`verify`, and a job
    still queued when its ``verify`` is cancelled (the authres deadline) never starts.
    """
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=EXECUTOR_WORKERS, thread_name_prefix="smtpx-dkim"
            )
        return _pool


async def _in_pool(pool: concurrent.futures.Executor, func: Callable[[], _T]) -> _T:
    # Cancelling the awaiting task cancels the pool's future too: a queued job is dropped.
    return await asyncio.get_running_loop().run_in_executor(pool, func)


# -- verify ----------------------------------------------------------------------------------


async def verify(
    message: bytes,
    *,
    resolver: dns.asyncresolver.Resolver | None = None,
    max_verifications: int = DEFAULT_MAX_VERIFICATIONS,
    allow_body_length: bool = False,
    min_rsa_bits: int = 1024,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    max_header_fields: int = DEFAULT_MAX_HEADER_FIELDS,
    pool: concurrent.futures.Executor | None = None,
    open_message: Callable[[], BinaryIO] | None = None,
) -> list[Verification]:
    """Verify every DKIM-Signature of ``message`` (up to ``max_verifications``).

    Args:
        message: The message, header and body, CRLF (or LF) line endings; with
            ``open_message``, only its start: at least ``max_header_bytes + 4`` bytes (or all
            of it), so that the empty line after a header section within the cap is in it.
        resolver: The resolver for the key records; defaults to the system's.
        max_verifications: Signatures beyond this many (top-down) are ignored.
        allow_body_length: Accept signatures with ``l=`` (off by default, RFC 6376 8.2).
        min_rsa_bits: Shortest RSA key accepted (RFC 8301 3.2 requires at least 1024).
        max_header_bytes: A signed message whose header section is longer gets one
            ``permerror`` and no further work (default :data:`DEFAULT_MAX_HEADER_BYTES`).
        max_header_fields: The same for the number of header fields (default
            :data:`DEFAULT_MAX_HEADER_FIELDS`).
        pool: Where the hashing and signature checks run; :func:`executor` when None.
        open_message: Opens the whole message as a binary file (``Envelope.open`` of a
            spooled message): the body is then read from it in pieces of
            :data:`BODY_CHUNK` bytes in the pool and hashed as it is read, so memory stays
            bounded by the header caps whatever the body's size.

    Returns:
        One Verification per signature, in header order; an unsigned message gives ``[]``.
        A signed message over a header cap gives a single ``permerror`` Verification with
        no domain.

    Raises:
        MailParseError: The header section cannot be parsed (a line without a colon).
    """
    end, body_start = _header_end(message)
    block = message[:end]
    if _DKIM_SIGNATURE.search(b"\n" + block.lower()) is None:
        # Unsigned (the common case): nothing to split or hash, nothing queued in the pool. A
        # malformed header section (within the byte cap) is still reported, as for signed mail.
        if (
            block
            and len(block) <= max_header_bytes
            and (block[:1] in (b" ", b"\t") or _BAD_LINE.search(b"\n" + block.rstrip(b"\n")))
        ):
            raise MailParseError("malformed message header")
        return []
    over = _over_caps(block, max_header_bytes, max_header_fields)
    if over:
        return [Verification(result=PERMERROR, reason=over)]
    if pool is None:
        pool = executor()
    if open_message is not None:
        # Only the header section is split; the body stays in the file (see _verify_jobs).
        fields, _ = await _in_pool(pool, functools.partial(_split, message[:end], end, end))
        body: bytes | tuple[Callable[[], BinaryIO], int] = (open_message, body_start)
    else:
        fields, body = await _in_pool(pool, functools.partial(_split, message, end, body_start))
    signatures = [
        (i, value) for i, (name, value) in enumerate(fields) if name.lower() == b"dkim-signature"
    ][: max(0, max_verifications)]
    sigs = [
        _describe(i, value.decode("utf-8", "replace"), allow_body_length=allow_body_length)
        for i, value in signatures
    ]
    if not sigs:
        return []
    names = sorted({s.key_name for s in sigs if not s.settled})
    if resolver is None:
        resolver = _dns.default_resolver()
    fetched = dict(await asyncio.gather(*(_fetch_key(resolver, n) for n in names)))
    jobs: list[_Job] = []
    for index, sig in enumerate(sigs):
        if sig.settled:
            continue
        record = fetched[sig.key_name]
        try:
            if isinstance(record, _SigError):
                raise record
            key = _check_key(record, sig.verification, min_rsa_bits)
        except _SigError as exc:
            sig.verification = _replace(sig.verification, result=exc.result, reason=exc.reason)
            sig.settled = True
            continue
        tags = sig.tags
        jobs.append(
            _Job(
                index=index,
                position=sig.position,
                header_keys=sig.verification.header_keys,
                canonicalization=_canonicalization(tags),
                body_length=int(tags["l"]) if "l" in tags else None,
                body_hash=_base64(tags["bh"], "bh"),
                signature=_base64(tags["b"], "b"),
                key=key,
            )
        )
    if not jobs:
        return [s.verification for s in sigs]
    outcomes = await _in_pool(pool, functools.partial(_verify_jobs, fields, body, jobs))
    out: list[Verification] = []
    for index, sig in enumerate(sigs):
        if index in outcomes:
            result, reason = outcomes[index]
            out.append(_replace(sig.verification, result=result, reason=reason))
        else:
            out.append(sig.verification)
    return out


def _ed25519_seed(private_key: bytes) -> bytes:
    """Accept a raw 32-byte seed, its base64 text, or a PKCS#8 PEM (RFC 8410)."""
    if len(private_key) == 32:
        return private_key
    text = private_key.strip()
    if text.startswith(b"-----BEGIN"):
        body = b"".join(line for line in text.splitlines() if not line.startswith(b"-----"))
        der = base64.b64decode(body)
        if len(der) == 48 and der.startswith(_ED25519_PKCS8_PREFIX):
            return der[16:]
        raise DKIMSignError("not an Ed25519 PKCS#8 private key")
    try:
        seed = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise DKIMSignError("Ed25519 key must be a 32-byte seed, base64 or PEM") from None
    if len(seed) != 32:
        raise DKIMSignError("Ed25519 seed must be 32 bytes")
    return seed


def _epoch(value: int | datetime.datetime) -> int:
    return int(value.timestamp()) if isinstance(value, datetime.datetime) else int(value)


def sign(
    message: bytes,
    *,
    domain: str,
    selector: str,
    private_key: bytes,
    algorithm: str = ALGORITHM_RSA_SHA256,
    canonicalization: tuple[str, str] = ("relaxed", "relaxed"),
    header_keys: Sequence[str] | None = None,
    timestamp: int | datetime.datetime | None = None,
    expiration: int | datetime.datetime | None = None,
    identity: str | None = None,
) -> bytes:
    """Sign ``message`` and return the ``DKIM-Signature`` header line (CRLF-terminated).

    The message itself is not returned: prepend the line (``line + message``), which is what
    an MTA does anyway and saves a copy of a large body. It runs synchronously (RSA signing
    takes about a millisecond); call it through ``asyncio.to_thread`` for large messages.

    Args:
        message: The message to sign.
        domain: ``d=``.
        selector: ``s=``.
        private_key: RSA: a PEM private key (PKCS#1 or PKCS#8). Ed25519: the 32-byte seed,
            its base64 text (RFC 8463 style) or a PKCS#8 PEM.
        algorithm: ``"rsa-sha256"`` or ``"ed25519-sha256"`` (rsa-sha1 is refused, RFC 8301).
        canonicalization: (header, body), each ``"relaxed"`` or ``"simple"``.
        header_keys: Fields to sign; must include From. Default: dkimpy's choice of the
            RFC 6376 5.4.1 list present in the message, with From signed twice so that a
            second From cannot be added.
        timestamp: ``t=``; default now.
        expiration: ``x=``; default none.
        identity: ``i=``; default none (which means ``@domain``). Must be within ``domain``.

    Raises:
        DKIMSignError: An option is invalid or the key cannot be read.
    """
    if not domain or not selector:
        raise DKIMSignError("domain and selector are required")
    if algorithm not in _KEY_TYPE:
        raise DKIMSignError(f"unsupported algorithm {algorithm!r} (rsa-sha256, ed25519-sha256)")
    if any(c not in ("relaxed", "simple") for c in canonicalization) or len(canonicalization) != 2:
        raise DKIMSignError(f"invalid canonicalization {canonicalization!r}")
    if identity is not None:
        ident_domain = identity.rpartition("@")[2].lower()
        if "@" not in identity or not (
            ident_domain == domain.lower() or ident_domain.endswith("." + domain.lower())
        ):
            raise DKIMSignError("identity must be within the signing domain")
    try:
        d = dkim.DKIM(message, logger=_log, signature_algorithm=algorithm.encode())
    except dkim.MessageFormatError as exc:
        raise DKIMSignError(f"malformed message header: {exc}") from exc
    if header_keys is None:
        include = tuple(h.lower() for h in d.default_sign_headers())
    else:
        include = tuple(h.lower().encode("ascii") for h in header_keys)
    if b"from" not in include:
        raise DKIMSignError("the From header field must be signed (RFC 6376 5.4)")
    signing_key: object
    if algorithm == ALGORITHM_RSA_SHA256:
        try:
            signing_key = dkim.parse_pem_private_key(_pem_normalised(private_key))
        except Exception as exc:  # dkimpy's ASN.1 reader raises assorted errors
            raise DKIMSignError(f"cannot read the RSA private key: {exc}") from exc
    else:
        signing_key = _Ed25519Signer(_ed25519_seed(private_key))

    policy = dkim.CanonicalizationPolicy.from_c_value("/".join(canonicalization).encode())
    body_hash = base64.b64encode(hashlib.sha256(policy.canonicalize_body(d.body)).digest())
    when = _epoch(timestamp) if timestamp is not None else int(time.time())
    fields: list[tuple[bytes, bytes]] = [
        (b"v", b"1"),
        (b"a", algorithm.encode()),
        (b"c", policy.to_c_value()),
        (b"d", domain.encode()),
    ]
    if identity is not None:
        fields.append((b"i", identity.encode()))
    fields += [(b"q", b"dns/txt"), (b"s", selector.encode()), (b"t", str(when).encode())]
    if expiration is not None:
        fields.append((b"x", str(_epoch(expiration)).encode()))
    # b= is a placeholder long enough to be folded onto its own line (dkimpy refolds after).
    fields += [(b"h", b" : ".join(include)), (b"bh", body_hash), (b"b", b"0" * 60)]
    d.hasher = hashlib.sha256
    try:
        value = d.gen_header(fields, include, policy, b"DKIM-Signature", signing_key)
    except dkim.DKIMException as exc:
        raise DKIMSignError(str(exc)) from exc
    return b"DKIM-Signature: " + value


def _pem_normalised(pem: bytes) -> bytes:
    # dkimpy's PEM reader wants LF line ends around the base64 block.
    return pem.replace(b"\r\n", b"\n")


@dataclass(frozen=True)
class _Signed:
    signature: bytes


class _Ed25519Signer:
    """The part of a PyNaCl ``SigningKey`` dkimpy's ``gen_header`` calls, on ``cryptography``.

    dkimpy signs Ed25519 with ``pk.sign(digest).signature``; this saves the PyNaCl dependency
    (Ed25519 is deterministic, RFC 8032 5.1.6: the same bytes as PyNaCl).
    """

    def __init__(self, seed: bytes) -> None:
        self._key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)

    def sign(self, data: bytes) -> _Signed:
        return _Signed(self._key.sign(data))
