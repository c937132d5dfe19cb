"""DKIM signing and verification (RFC 6376, RFC 8301, RFC 8463) on top of dkimpy.

Verification never blocks the event loop: the key records are fetched with smtpx's async DNS
layer (:mod:`smtpx.authres._dns`), then dkimpy's hashing and RSA/Ed25519 maths run in a worker
thread with a lookup function that serves the records already fetched.

dkimpy's yes/no answer is not taken at face value. Before dkimpy runs, every signature and key
record is checked here, so that:

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
import datetime
import hashlib
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import replace as _replace

import dkim
import dns.asyncresolver

from smtpx.errors import MailParseError

from . import FAIL, PASS, PERMERROR, POLICY, TEMPERROR, DKIMResult, _dns

__all__ = [
    "ALGORITHM_ED25519_SHA256",
    "ALGORITHM_RSA_SHA256",
    "DEFAULT_MAX_VERIFICATIONS",
    "DKIMSignError",
    "Verification",
    "sign",
    "verify",
]

ALGORITHM_RSA_SHA256 = "rsa-sha256"
ALGORITHM_ED25519_SHA256 = "ed25519-sha256"
DEFAULT_MAX_VERIFICATIONS = 5
"""Signatures verified per message; later ones are ignored (RFC 6376 6.1 lets verifiers limit)."""

_log = logging.getLogger("smtpx.authres.dkim")

_KEY_TYPE = {ALGORITHM_RSA_SHA256: "rsa", ALGORITHM_ED25519_SHA256: "ed25519"}
# RFC 6376 3.5 required tags.
_REQUIRED = ("v", "a", "b", "bh", "d", "h", "s")
# PKCS#8 wrapping of an Ed25519 private key (RFC 8410 7): fixed 16-byte prefix, then the seed.
_ED25519_PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")


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
    if not value.isdigit():
        raise _SigError(PERMERROR, f"{tag}= is not a decimal number")
    try:
        return datetime.datetime.fromtimestamp(int(value), datetime.timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise _SigError(PERMERROR, f"{tag}= is out of range") from None


@dataclass
class _Sig:
    """Pre-checked signature, or the Verification that already settles it."""

    index: int
    verification: Verification
    key_name: str = ""
    settled: bool = False


def _describe(index: int, value: str, *, allow_body_length: bool) -> _Sig:
    unfolded = re.sub(r"[ \t\r\n]+", " ", value)
    try:
        tags = _tags(unfolded, "signature")
    except _SigError as exc:
        return _Sig(index, Verification(result=exc.result, reason=exc.reason), settled=True)
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
        return _Sig(index, _replace(base, result=exc.result, reason=exc.reason), settled=True)
    name = f"{base.selector}._domainkey.{base.domain}".lower()
    return _Sig(index, base, key_name=name)


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
    if "q" in tags and "dns/txt" not in [q.strip() for q in tags["q"].split(":")]:
        raise _SigError(PERMERROR, f"unsupported query method q={tags['q']}")
    now = datetime.datetime.now(datetime.timezone.utc)
    if v.expiration is not None and v.expiration < now:
        # RFC 6376 3.5 x=: an expired signature is treated as failing (PERMFAIL).
        raise _SigError(PERMERROR, "signature expired")
    if v.expiration is not None and v.time is not None and v.expiration < v.time:
        raise _SigError(PERMERROR, "x= is before t=")


def _check_key(record: str, v: Verification, min_rsa_bits: int) -> None:
    """RFC 6376 3.6.1 key record checks dkimpy skips or reports as a plain False."""
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
        if len(der) != 32:
            raise _SigError(PERMERROR, "ed25519 key is not 32 bytes")
        return
    try:
        modulus = dkim.parse_public_key(der)["modulus"]
    except Exception:  # dkimpy's ASN.1 reader raises assorted errors
        raise _SigError(PERMERROR, "key record p= is not an RSA public key") from None
    if modulus.bit_length() < min_rsa_bits:
        raise _SigError(PERMERROR, f"RSA key too short: {modulus.bit_length()} bits")


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


def _parse_message(message: bytes) -> dkim.DKIM:
    try:
        return dkim.DKIM(message, logger=_log)
    except dkim.MessageFormatError as exc:
        raise MailParseError(f"malformed message header: {exc}") from exc


def _signature_values(d: dkim.DKIM) -> list[str]:
    return [
        value.decode("utf-8", "replace")
        for name, value in d.headers
        if name.lower() == b"dkim-signature"
    ]


def _run_dkimpy(
    d: dkim.DKIM, sigs: Sequence[_Sig], keys: Mapping[str, str], min_rsa_bits: int
) -> list[Verification]:
    """The CPU part, in a worker thread: dkimpy checks the hashes and the signature."""
    d.minkey = min_rsa_bits

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        record = keys.get(name.decode("ascii", "replace").rstrip(".").lower())
        return None if record is None else record.encode("utf-8")

    out: list[Verification] = []
    for sig in sigs:
        if sig.settled:
            out.append(sig.verification)
            continue
        try:
            ok = d.verify(idx=sig.index, dnsfunc=dnsfunc)
        except dkim.ValidationError as exc:
            text = str(exc)
            if text.startswith("body hash mismatch"):
                out.append(_replace(sig.verification, result=FAIL, reason="body hash mismatch"))
            else:
                out.append(_replace(sig.verification, result=PERMERROR, reason=text))
            continue
        except dkim.DKIMException as exc:
            out.append(_replace(sig.verification, result=PERMERROR, reason=str(exc)))
            continue
        if ok:
            out.append(_replace(sig.verification, result=PASS, reason=""))
        else:
            out.append(_replace(sig.verification, result=FAIL, reason="signature did not verify"))
    return out


async def verify(
    message: bytes,
    *,
    resolver: dns.asyncresolver.Resolver | None = None,
    max_verifications: int = DEFAULT_MAX_VERIFICATIONS,
    allow_body_length: bool = False,
    min_rsa_bits: int = 1024,
) -> list[Verification]:
    """Verify every DKIM-Signature of ``message`` (up to ``max_verifications``).

    Args:
        message: The message, header and body, CRLF (or LF) line endings.
        resolver: The resolver for the key records; defaults to the system's.
        max_verifications: Signatures beyond this many (top-down) are ignored.
        allow_body_length: Accept signatures with ``l=`` (off by default, RFC 6376 8.2).
        min_rsa_bits: Shortest RSA key accepted (RFC 8301 3.2 requires at least 1024).

    Returns:
        One Verification per signature, in header order; an unsigned message gives ``[]``.

    Raises:
        MailParseError: The header section cannot be parsed (a line without a colon).
    """
    d = await asyncio.to_thread(_parse_message, message)
    values = _signature_values(d)[: max(0, max_verifications)]
    if not values:
        return []
    sigs = [_describe(i, v, allow_body_length=allow_body_length) for i, v in enumerate(values)]
    names = sorted({s.key_name for s in sigs if not s.settled})
    if resolver is None:
        resolver = _dns.default_resolver()
    fetched = dict(await asyncio.gather(*(_fetch_key(resolver, n) for n in names)))
    keys: dict[str, str] = {}
    for sig in sigs:
        if sig.settled:
            continue
        record = fetched[sig.key_name]
        try:
            if isinstance(record, _SigError):
                raise record
            _check_key(record, sig.verification, min_rsa_bits)
        except _SigError as exc:
            sig.verification = _replace(sig.verification, result=exc.result, reason=exc.reason)
            sig.settled = True
            continue
        keys[sig.key_name] = record
    if all(s.settled for s in sigs):
        return [s.verification for s in sigs]
    return await asyncio.to_thread(_run_dkimpy, d, sigs, keys, min_rsa_bits)


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
        signing_key = _nacl_key(_ed25519_seed(private_key))

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


def _nacl_key(seed: bytes) -> object:
    import nacl.signing  # noqa: PLC0415 (optional dependency of dkimpy, only for Ed25519)

    return nacl.signing.SigningKey(seed)
