"""SMTP AUTH building blocks (RFC 4954) that need no socket: hashes, auth file, SASL, throttle.

* Passwords: :func:`hash_password` / :func:`verify_password` with scrypt, stored in the PHC
  string format ``$scrypt$ln=L,r=R,p=P$SALT$HASH`` (salt and hash in standard base64
  without padding). Parameters outside documented bounds are refused, so a hostile or mistyped
  auth file cannot make one check take gigabytes or minutes.
* :class:`AuthFile` (``load_auth_file``): ``USER:$scrypt$...`` lines, ``#`` comments, blank
  lines; ``reload()`` swaps in a new file only if all of it is valid.
* :class:`Authenticator`: the typed async callable that checks credentials;
  :class:`FileAuthenticator` checks them against an ``AuthFile`` with scrypt in a small bounded
  thread pool, and spends the same work on unknown users as on known ones.
* SASL without I/O: :class:`SaslExchange` runs PLAIN (RFC 4616) or LOGIN over the client's
  base64 lines (``*`` cancels, ``=`` is an empty initial response, lines up to
  ``SASL_LINE_MAX_LENGTH``); errors carry the reply to send (:class:`SaslError`).
* :func:`decode_xtext` and :func:`mail_auth_param` for ``MAIL FROM:<...> AUTH=`` (RFC 3461 4,
  RFC 4954 5).
* :class:`AuthThrottle`: failure counters per connection and per client address that return
  the delay to await and whether to disconnect; it never sleeps itself.

Secrets never reach a log line, an exception message or a ``repr``: passwords are only
hashed, and decoded names are refused if they hold NUL, CR or LF.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import concurrent.futures
import hashlib
import hmac
import ipaddress
import logging
import os
import re
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from ._xtext import decode_xtext as decode_xtext
from ._xtext import encode_xtext as encode_xtext
from .errors import SMTPXError
from .responses import Response

__all__ = [
    "AUTH_ALREADY_DONE",
    "AUTH_BAD_BASE64",
    "AUTH_CANCELLED",
    "AUTH_INVALID_CREDENTIALS",
    "AUTH_IN_TRANSACTION",
    "AUTH_LINE_TOO_LONG",
    "AUTH_NOT_OFFERED",
    "AUTH_SUCCEEDED",
    "AUTH_TEMPORARY_FAILURE",
    "AUTH_TOO_MANY_FAILURES",
    "AUTH_UNKNOWN_MECHANISM",
    "DEFAULT_AUTH_BASE_DELAY",
    "DEFAULT_AUTH_FAILURE_WINDOW",
    "DEFAULT_AUTH_MAX_DELAY",
    "DEFAULT_AUTH_MAX_QUEUED",
    "DEFAULT_AUTH_MAX_TRACKED_ADDRESSES",
    "DEFAULT_AUTH_WORKERS",
    "DEFAULT_MAX_AUTH_FAILURES_PER_ADDRESS",
    "DEFAULT_MAX_AUTH_FAILURES_PER_CONNECTION",
    "DEFAULT_SCRYPT_LN",
    "DEFAULT_SCRYPT_P",
    "DEFAULT_SCRYPT_R",
    "MAX_SCRYPT_COST",
    "MECHANISMS",
    "MIN_SCRYPT_LN",
    "SASL_LINE_MAX_LENGTH",
    "AuthFile",
    "AuthThrottle",
    "Authenticator",
    "ConnectionAuthThrottle",
    "FailureVerdict",
    "FileAuthenticator",
    "LoginMechanism",
    "PlainMechanism",
    "SaslChallenge",
    "SaslCredentials",
    "SaslError",
    "SaslExchange",
    "SaslMechanism",
    "ScryptHash",
    "TemporaryAuthError",
    "check_username",
    "decode_xtext",
    "encode_xtext",
    "hash_password",
    "load_auth_file",
    "mail_auth_param",
    "parse_auth_lines",
    "verify_password",
]

log = logging.getLogger("smtpx.auth")

# --------------------------------------------------------------------------- replies
# RFC 4954 6 lists the AUTH replies and their enhanced codes.
AUTH_SUCCEEDED = Response(235, "2.7.0", "Authentication successful")
AUTH_INVALID_CREDENTIALS = Response(535, "5.7.8", "Authentication credentials invalid")
AUTH_BAD_BASE64 = Response(501, "5.5.2", "Cannot decode response")
AUTH_CANCELLED = Response(501, "5.0.0", "Authentication cancelled")
AUTH_LINE_TOO_LONG = Response(500, "5.5.6", "Authentication Exchange line is too long")
AUTH_UNKNOWN_MECHANISM = Response(504, "5.5.4", "Unrecognized authentication type")
AUTH_ALREADY_DONE = Response(503, "5.5.1", "Already authenticated")
AUTH_IN_TRANSACTION = Response(503, "5.5.1", "AUTH not permitted during a mail transaction")
AUTH_NOT_OFFERED = Response(
    538, "5.7.11", "Encryption required for requested authentication mechanism"
)
AUTH_TEMPORARY_FAILURE = Response(454, "4.7.0", "Temporary authentication failure")
AUTH_TOO_MANY_FAILURES = Response(421, "4.7.0", "Too many authentication failures")


class SaslError(SMTPXError):
    """A SASL exchange failed; ``response`` is the reply to send (RFC 4954 6).

    The message never quotes what the client sent.
    """

    def __init__(self, response: Response, reason: str = "") -> None:
        super().__init__(reason or response.text)
        self.response = response


class TemporaryAuthError(SMTPXError):
    """Credentials could not be checked now (pool saturated, backend down): ``454 4.7.0``."""

    response: ClassVar[Response] = AUTH_TEMPORARY_FAILURE


# --------------------------------------------------------------------------- scrypt
DEFAULT_SCRYPT_LN = 14
"""log2 of scrypt's N for new hashes: N = 16384 (16 MiB with r = 8; Django's choice)."""
DEFAULT_SCRYPT_R = 8
"""scrypt block size r for new hashes."""
DEFAULT_SCRYPT_P = 1
"""scrypt parallelism p for new hashes."""
MIN_SCRYPT_LN = 10
"""Smallest accepted ln (N = 1024): weaker entries are refused rather than trusted."""
MAX_SCRYPT_COST = 2**20
"""Largest accepted N * r * p: 8 times the default, at most 128 MiB per check."""
_MAX_SCRYPT_R = 64
_MAX_SCRYPT_P = 16
_SALT_BYTES = 16
_HASH_BYTES = 32
_MIN_SALT, _MAX_SALT = 8, 64
_MIN_HASH, _MAX_HASH = 16, 64

_PARAMS_RE = re.compile(r"ln=([1-9][0-9]?),r=([1-9][0-9]{0,2}),p=([1-9][0-9]{0,2})")
_B64_NOPAD_RE = re.compile(r"[A-Za-z0-9+/]+")


def _check_params(ln: int, r: int, p: int) -> None:
    if not MIN_SCRYPT_LN <= ln <= 20:
        raise ValueError(f"scrypt ln={ln} outside {MIN_SCRYPT_LN}..20")
    if not 1 <= r <= _MAX_SCRYPT_R:
        raise ValueError(f"scrypt r={r} outside 1..{_MAX_SCRYPT_R}")
    if not 1 <= p <= _MAX_SCRYPT_P:
        raise ValueError(f"scrypt p={p} outside 1..{_MAX_SCRYPT_P}")
    if (1 << ln) * r * p > MAX_SCRYPT_COST:
        raise ValueError(f"scrypt N*r*p = {(1 << ln) * r * p} is over {MAX_SCRYPT_COST}")


def _b64_nopad_decode(text: str, what: str, low: int, high: int) -> bytes:
    if not _B64_NOPAD_RE.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError(f"{what} is not unpadded standard base64")
    raw = base64.b64decode(text + "=" * (-len(text) % 4))
    if not low <= len(raw) <= high:
        raise ValueError(f"{what} is {len(raw)} bytes, not {low}..{high}")
    return raw


def _b64_nopad(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii").rstrip("=")


def _secret_bytes(password: str | bytes) -> bytes:
    # surrogatepass: a str that cannot be UTF-8 (lone surrogates) still hashes, and no
    # UnicodeEncodeError quotes a character of the password.
    return password if isinstance(password, bytes) else password.encode("utf-8", "surrogatepass")


@dataclass(frozen=True, slots=True)
class ScryptHash:
    """A parsed ``$scrypt$ln=L,r=R,p=P$SALT$HASH`` string (its ``repr`` omits salt and hash).

    Attributes:
        ln: log2 of the CPU/memory cost N.
        r: Block size.
        p: Parallelism.
        salt: The random salt.
        digest: The derived key; its length is the key length to derive.
    """

    ln: int
    r: int
    p: int
    salt: bytes = field(repr=False)
    digest: bytes = field(repr=False)

    @classmethod
    def parse(cls, phc: str) -> ScryptHash:
        """Parse and bound-check a PHC string.

        Raises:
            ValueError: Not a well-formed scrypt PHC string, or parameters out of bounds
                (``MIN_SCRYPT_LN``, ``MAX_SCRYPT_COST``, r <= 64, p <= 16, salt 8..64 bytes,
                hash 16..64 bytes). The message never quotes the string.
        """
        parts = phc.split("$")
        if len(parts) != 5 or parts[0] or parts[1] != "scrypt":
            raise ValueError("not a $scrypt$ln=L,r=R,p=P$SALT$HASH string")
        match = _PARAMS_RE.fullmatch(parts[2])
        if match is None:
            raise ValueError("scrypt parameters must read ln=L,r=R,p=P")
        ln, r, p = (int(g) for g in match.groups())
        _check_params(ln, r, p)
        salt = _b64_nopad_decode(parts[3], "salt", _MIN_SALT, _MAX_SALT)
        digest = _b64_nopad_decode(parts[4], "hash", _MIN_HASH, _MAX_HASH)
        return cls(ln, r, p, salt, digest)

    def __str__(self) -> str:
        return (
            f"$scrypt$ln={self.ln},r={self.r},p={self.p}"
            f"${_b64_nopad(self.salt)}${_b64_nopad(self.digest)}"
        )

    @property
    def memory(self) -> int:
        """Bytes scrypt needs for one check (OpenSSL's bound: 128 * r * (N + p + 2))."""
        return 128 * self.r * ((1 << self.ln) + self.p + 2)

    def derive(self, password: str | bytes) -> bytes:
        """Run scrypt on ``password`` with this entry's salt and parameters (blocks ~0.05 s)."""
        return hashlib.scrypt(
            _secret_bytes(password),
            salt=self.salt,
            n=1 << self.ln,
            r=self.r,
            p=self.p,
            maxmem=self.memory + (1 << 20),
            dklen=len(self.digest),
        )

    def verify(self, password: str | bytes) -> bool:
        """True if ``password`` matches; the comparison is constant-time (``hmac``)."""
        return hmac.compare_digest(self.derive(password), self.digest)


def hash_password(
    password: str | bytes,
    *,
    ln: int = DEFAULT_SCRYPT_LN,
    r: int = DEFAULT_SCRYPT_R,
    p: int = DEFAULT_SCRYPT_P,
) -> str:
    """Hash a password with scrypt and a random 16-byte salt.

    Args:
        password: The password; a str is hashed as its UTF-8 bytes (no SASLprep).
        ln: log2 of N, ``MIN_SCRYPT_LN``..20.
        r: Block size.
        p: Parallelism.

    Returns:
        ``$scrypt$ln=L,r=R,p=P$SALT$HASH``, salt and 32-byte hash in unpadded base64.

    Raises:
        ValueError: Parameters out of the bounds ``ScryptHash.parse`` enforces.
    """
    _check_params(ln, r, p)
    entry = ScryptHash(ln, r, p, secrets.token_bytes(_SALT_BYTES), b"\0" * _HASH_BYTES)
    return str(ScryptHash(ln, r, p, entry.salt, entry.derive(password)))


def verify_password(phc: str, password: str | bytes) -> bool:
    """Check ``password`` against a ``hash_password`` string, in constant time.

    Raises:
        ValueError: ``phc`` is malformed or has parameters out of bounds.
    """
    return ScryptHash.parse(phc).verify(password)


# --------------------------------------------------------------------------- auth file
def check_username(name: str) -> None:
    """Refuse a user name that could not be stored in, or safely read from, an auth file.

    Raises:
        ValueError: Empty, a control character (NUL, CR, LF, ...), surrounding whitespace, or
            a leading ``#`` (it would read as a comment).
    """
    if not name:
        raise ValueError("empty user name")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise ValueError("control character in user name")
    if name != name.strip():
        raise ValueError("user name starts or ends with whitespace")
    if name.startswith("#"):
        raise ValueError("user name starts with '#'")


def parse_auth_lines(text: str, source: str = "<auth file>") -> dict[str, ScryptHash]:
    """Parse auth-file text: ``USER:$scrypt$...`` lines, ``#`` comments, blank lines.

    The user name is everything before the last ``:`` (a PHC string has none), without
    surrounding whitespace. Names compare exactly (case-sensitive).

    Raises:
        ValueError: ``"SOURCE:LINE: reason"`` for the first bad line (malformed, duplicate
            user, or absurd scrypt parameters); the line itself is never quoted, as it may
            hold a password typed in by mistake.
    """
    entries: dict[str, ScryptHash] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, phc = line.rpartition(":")
        try:
            if not sep:
                raise ValueError("expected USER:$scrypt$...")
            name = name.strip()
            check_username(name)
            if name in entries:
                raise ValueError("duplicate user")
            entries[name] = ScryptHash.parse(phc.strip())
        except ValueError as exc:
            raise ValueError(f"{source}:{number}: {exc}") from None
    return entries


class AuthFile:
    """Users and their scrypt hashes, read from a file of ``USER:$scrypt$...`` lines.

    Args:
        path: The file (UTF-8). Read at once; ``reload()`` reads it again (on SIGHUP).

    Raises:
        ValueError: A bad line (see ``parse_auth_lines``), or the file is not UTF-8.
        OSError: The file cannot be read.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._entries: dict[str, ScryptHash] = {}
        self._dummy = ScryptHash(DEFAULT_SCRYPT_LN, DEFAULT_SCRYPT_R, DEFAULT_SCRYPT_P, b"", b"")
        self.reload()

    def reload(self) -> None:
        """Read the file again; on any error the old entries stay and the error is raised."""
        with open(self.path, encoding="utf-8") as f:
            text = f.read()
        entries = parse_auth_lines(text, self.path)
        dummy = _dummy_like(entries.values())
        # Two plain assignments: a reader sees the old or the new table, both complete.
        self._entries, self._dummy = entries, dummy

    def get(self, username: str) -> ScryptHash | None:
        """The entry of ``username``, or None."""
        return self._entries.get(username)

    @property
    def dummy(self) -> ScryptHash:
        """A random entry with the file's most common parameters, to check unknown users."""
        return self._dummy

    def users(self) -> list[str]:
        """The user names, in file order."""
        return list(self._entries)

    def __contains__(self, username: object) -> bool:
        return username in self._entries

    def __len__(self) -> int:
        return len(self._entries)


def _dummy_like(entries: Iterable[ScryptHash]) -> ScryptHash:
    shapes = collections.Counter((e.ln, e.r, e.p, len(e.digest)) for e in entries)
    ln, r, p, size = (
        shapes.most_common(1)[0][0]
        if shapes
        else (DEFAULT_SCRYPT_LN, DEFAULT_SCRYPT_R, DEFAULT_SCRYPT_P, _HASH_BYTES)
    )
    return ScryptHash(ln, r, p, secrets.token_bytes(_SALT_BYTES), secrets.token_bytes(size))


def load_auth_file(path: str | os.PathLike[str]) -> AuthFile:
    """Read an auth file (see ``AuthFile``)."""
    return AuthFile(path)


# --------------------------------------------------------------------------- authenticators
class Authenticator(Protocol):
    """Checks credentials: an async callable returning the authenticated identity or None.

    Called with the SASL mechanism name (``"PLAIN"``, ``"LOGIN"``), the user name (authcid),
    the password and the authorization identity (authzid, ``""`` if none). Return the
    identity the session is authenticated as, or None for bad credentials (``535 5.7.8``).
    Raise ``TemporaryAuthError`` when the check cannot be made now (``454 4.7.0``). It must
    not log the password.
    """

    async def __call__(
        self, mechanism: str, username: str, password: str, authzid: str, /
    ) -> str | None:
        """Return the identity, or None to refuse."""
        ...


DEFAULT_AUTH_WORKERS = 2
"""Threads computing scrypt in a ``FileAuthenticator``."""
DEFAULT_AUTH_MAX_QUEUED = 8
"""Checks that may wait for a ``FileAuthenticator`` thread; more get ``454 4.7.0`` at once."""
_SATURATION_LOG_INTERVAL = 60.0  # one warning a minute, not one per refused guess


class FileAuthenticator:
    """An ``Authenticator`` backed by an ``AuthFile``, with scrypt off the event loop.

    Each check runs in a private pool of ``workers`` threads. At most ``max_queued`` further
    checks wait for a thread; beyond that the call raises ``TemporaryAuthError`` at once
    (``454 4.7.0``), so a crowd of guessers costs a bounded amount of memory and CPU and
    cannot delay the other clients' replies. A slot stays taken until its scrypt has ended,
    even if the caller was cancelled.

    An unknown user is checked against ``AuthFile.dummy`` (same parameters as the file's
    entries), so it costs the same scrypt as a known one; digests compare in constant time.

    Args:
        auth_file: The users, or the path of their file.
        workers: Threads computing scrypt (default 2).
        max_queued: Checks allowed to wait for a thread (default 8).
        authorize: ``authorize(username, authzid)`` may allow acting as another identity;
            by default an authzid must be empty or equal to the user name (RFC 4616 2).
        mechanisms: The password mechanisms accepted (default PLAIN and LOGIN).
    """

    def __init__(
        self,
        auth_file: AuthFile | str | os.PathLike[str],
        *,
        workers: int = DEFAULT_AUTH_WORKERS,
        max_queued: int = DEFAULT_AUTH_MAX_QUEUED,
        authorize: Callable[[str, str], bool] | None = None,
        mechanisms: frozenset[str] = frozenset({"PLAIN", "LOGIN"}),
    ) -> None:
        if workers < 1 or max_queued < 0:
            raise ValueError("workers must be at least 1 and max_queued not negative")
        self.auth_file = auth_file if isinstance(auth_file, AuthFile) else AuthFile(auth_file)
        self.authorize = authorize
        self.mechanisms = mechanisms
        self._slots = threading.BoundedSemaphore(workers + max_queued)
        self._warned_at = -_SATURATION_LOG_INTERVAL
        self._refused = 0
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="smtpx-scrypt"
        )

    async def __call__(
        self, mechanism: str, username: str, password: str, authzid: str, /
    ) -> str | None:
        """Check the credentials; the identity is ``authzid`` if given and allowed.

        Raises:
            TemporaryAuthError: Every worker is busy and the queue is full.
        """
        if mechanism not in self.mechanisms:
            return None
        entry = self.auth_file.get(username)
        target = entry if entry is not None else self.auth_file.dummy
        if not self._slots.acquire(blocking=False):
            self._refused += 1
            now = time.monotonic()
            if now - self._warned_at >= _SATURATION_LOG_INTERVAL:
                log.warning(
                    "auth: scrypt pool saturated; %d checks answered 454 4.7.0", self._refused
                )
                self._warned_at, self._refused = now, 0
            raise TemporaryAuthError("authentication pool saturated")
        try:
            job = self._pool.submit(target.verify, password)
        except BaseException:
            self._slots.release()
            raise
        job.add_done_callback(lambda _job: self._slots.release())
        matched = await asyncio.wrap_future(job)
        ok = matched and entry is not None
        if ok and authzid not in ("", username):
            ok = self.authorize is not None and self.authorize(username, authzid)
        # %r: a name is shown escaped, whatever it holds; the password is never logged.
        log.debug("auth %s for %r: %s", mechanism, username, "ok" if ok else "refused")
        if not ok:
            return None
        return authzid or username

    def close(self) -> None:
        """Stop the worker threads (after the running checks)."""
        self._pool.shutdown(wait=True, cancel_futures=True)


# --------------------------------------------------------------------------- SASL
SASL_LINE_MAX_LENGTH = 12288
"""Longest SASL response line, CRLF excluded (RFC 4954 4); longer gets ``500 5.5.6``."""

# Python 3.10 has no strict_mode: a length check, one character class over all but the last
# quantum, and the last quantum's three shapes. No group is repeated, so nothing backtracks.
_B64_BODY_RE = re.compile(rb"[A-Za-z0-9+/]*")
_B64_LAST_RE = re.compile(rb"[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4}")


def _b64decode_regex(data: bytes) -> bytes:
    if len(data) % 4:
        raise ValueError("not base64")
    if data and not (
        _B64_BODY_RE.fullmatch(data, 0, len(data) - 4) and _B64_LAST_RE.fullmatch(data[-4:])
    ):
        raise ValueError("not base64")
    return binascii.a2b_base64(data)


if sys.version_info >= (3, 11):

    def _b64decode_strict(data: bytes) -> bytes:
        try:
            out = binascii.a2b_base64(data, strict_mode=True)
        except binascii.Error:
            raise ValueError("not base64") from None
        # Before 3.13, strict mode lets padding after a whole quantum through ("YWJj=",
        # "YWJj===="; fixed in CPython 3.13): the length tells.
        if len(data) % 4 or len(out) != len(data) // 4 * 3 - data[-2:].count(b"="):
            raise ValueError("not base64")
        return out

else:  # strict_mode is 3.11+: the regex checks the same alphabet and padding rules
    _b64decode_strict = _b64decode_regex


def _sasl_name(raw: bytes, what: str) -> str:
    # RFC 4616 2: UTF-8; NUL, CR and LF are refused so a name never splits a log line or a
    # header (issue 12).
    if b"\0" in raw or b"\r" in raw or b"\n" in raw:
        raise SaslError(AUTH_INVALID_CREDENTIALS, f"{what} holds NUL, CR or LF")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SaslError(AUTH_INVALID_CREDENTIALS, f"{what} is not UTF-8") from None


def _sasl_password(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SaslError(AUTH_INVALID_CREDENTIALS, "password is not UTF-8") from None


@dataclass(frozen=True, slots=True)
class SaslChallenge:
    """A server challenge to send as ``334 <base64>``.

    Attributes:
        data: The challenge, decoded; ``wire()`` encodes it (``b""`` sends ``334 `` alone).
    """

    data: bytes

    def wire(self) -> bytes:
        """The reply line: ``"334" SP [base64] CRLF`` (RFC 4954 4; the SP stays when empty)."""
        return b"334 " + base64.b64encode(self.data) + b"\r\n"


@dataclass(frozen=True, slots=True)
class SaslCredentials:
    """What a password mechanism decoded; its ``repr`` hides the password.

    Attributes:
        mechanism: ``"PLAIN"`` or ``"LOGIN"`` (or a plugged-in mechanism's name).
        authcid: The user name being authenticated.
        password: The password.
        authzid: The identity to act as; ``""`` for the authcid itself.
    """

    mechanism: str
    authcid: str
    password: str = field(repr=False)
    authzid: str = ""


class SaslMechanism(Protocol):
    """One SASL mechanism's server side for one exchange, without I/O.

    ``step(None)`` starts without an initial response; otherwise ``step`` gets each decoded
    client response (the initial response first, ``b""`` for ``=``). It returns the next
    challenge, or the credentials once complete, and raises ``SaslError`` to fail.
    """

    name: str

    def step(self, response: bytes | None) -> SaslChallenge | SaslCredentials:
        """Consume one client response."""
        ...


class PlainMechanism:
    """SASL PLAIN (RFC 4616): one message ``authzid NUL authcid NUL passwd``.

    Args:
        allow_authzid: Pass on an authzid different from the authcid (the authenticator then
            decides); by default such a message fails with ``535 5.7.8`` (RFC 4616 2).
    """

    name = "PLAIN"

    def __init__(self, *, allow_authzid: bool = False) -> None:
        self.allow_authzid = allow_authzid
        self._done = False

    def step(self, response: bytes | None) -> SaslChallenge | SaslCredentials:
        """Ask for the message (empty challenge), or decode it."""
        if self._done:
            raise RuntimeError("the PLAIN exchange is over")
        if response is None:
            return SaslChallenge(b"")
        self._done = True
        parts = response.split(b"\0", 3)  # at most 4 parts, however many NULs were sent
        if len(parts) != 3:
            raise SaslError(AUTH_INVALID_CREDENTIALS, "PLAIN needs exactly two NULs")
        raw_authzid, raw_authcid, raw_password = parts
        authzid = _sasl_name(raw_authzid, "authzid")
        authcid = _sasl_name(raw_authcid, "authcid")
        password = _sasl_password(raw_password)
        if not authcid or not password:
            raise SaslError(AUTH_INVALID_CREDENTIALS, "empty authcid or password")
        if authzid == authcid:
            authzid = ""
        if authzid and not self.allow_authzid:
            raise SaslError(AUTH_INVALID_CREDENTIALS, "authzid differs from authcid")
        return SaslCredentials(self.name, authcid, password, authzid)


class LoginMechanism:
    """SASL LOGIN (draft-murchison-sasl-login): ``Username:`` then ``Password:`` challenges.

    An initial response, if any, is the user name.
    """

    name = "LOGIN"
    USERNAME_CHALLENGE = SaslChallenge(b"Username:")  # "334 VXNlcm5hbWU6"
    PASSWORD_CHALLENGE = SaslChallenge(b"Password:")  # "334 UGFzc3dvcmQ6"

    def __init__(self) -> None:
        self._username: str | None = None
        self._done = False

    def step(self, response: bytes | None) -> SaslChallenge | SaslCredentials:
        """Ask for the user name, then the password; then return the credentials."""
        if self._done:
            raise RuntimeError("the LOGIN exchange is over")
        if response is None:
            return self.USERNAME_CHALLENGE
        if self._username is None:
            self._username = _sasl_name(response, "user name")
            return self.PASSWORD_CHALLENGE
        self._done = True
        password = _sasl_password(response)
        if not self._username or not password:
            raise SaslError(AUTH_INVALID_CREDENTIALS, "empty user name or password")
        return SaslCredentials(self.name, self._username, password)


MECHANISMS: Mapping[str, Callable[[], SaslMechanism]] = {
    "PLAIN": PlainMechanism,
    "LOGIN": LoginMechanism,
}
"""The built-in mechanisms by name; pass your own mapping to ``SaslExchange.begin``."""


class SaslExchange:
    """One AUTH exchange over the client's lines, without I/O.

    ``begin`` takes the AUTH command's arguments; each later client line goes to
    ``receive_line``. Both return a ``SaslChallenge`` (send ``challenge.wire()``, read the
    next line) or ``SaslCredentials`` (check them with the ``Authenticator``), or raise
    ``SaslError`` whose ``response`` ends the exchange.

    Args:
        mechanism: The mechanism instance for this exchange.
        max_line_length: Longest response line, CRLF excluded (``SASL_LINE_MAX_LENGTH``).
    """

    def __init__(
        self, mechanism: SaslMechanism, *, max_line_length: int = SASL_LINE_MAX_LENGTH
    ) -> None:
        self.mechanism = mechanism
        self.max_line_length = max_line_length

    @classmethod
    def begin(
        cls,
        name: str,
        initial_response: str | None = None,
        *,
        mechanisms: Mapping[str, Callable[[], SaslMechanism]] = MECHANISMS,
        max_line_length: int = SASL_LINE_MAX_LENGTH,
    ) -> tuple[SaslExchange, SaslChallenge | SaslCredentials]:
        """Start ``AUTH name [initial_response]``.

        Args:
            name: The mechanism name (case-insensitive).
            initial_response: The second AUTH argument: base64, ``"="`` for an empty
                response (RFC 4954 4), None if absent.
            mechanisms: Mechanisms offered, by upper-case name.
            max_line_length: See the class.

        Raises:
            SaslError: ``504 5.5.4`` for an unknown mechanism, or any failure of the
                initial response (``501 5.5.2`` bad base64, ``501`` for ``*``, ``535``).
        """
        factory = mechanisms.get(name.upper())
        if factory is None:
            raise SaslError(AUTH_UNKNOWN_MECHANISM)
        exchange = cls(factory(), max_line_length=max_line_length)
        if initial_response is None:
            return exchange, exchange.mechanism.step(None)
        if initial_response == "=":
            return exchange, exchange.mechanism.step(b"")
        return exchange, exchange.receive_line(initial_response.encode("ascii", "replace"))

    def receive_line(self, line: bytes) -> SaslChallenge | SaslCredentials:
        """Feed one client line (a trailing CRLF is ignored).

        Raises:
            SaslError: ``500 5.5.6`` over ``max_line_length``, ``501 5.0.0`` for ``*``
                (cancel), ``501 5.5.2`` for anything but strict base64, or the mechanism's
                failure.
        """
        if line.endswith(b"\r\n"):
            line = line[:-2]
        if len(line) > self.max_line_length:
            raise SaslError(AUTH_LINE_TOO_LONG)
        if line == b"*":
            raise SaslError(AUTH_CANCELLED)
        try:
            decoded = _b64decode_strict(line)
        except ValueError:
            raise SaslError(AUTH_BAD_BASE64) from None
        return self.mechanism.step(decoded)


# --------------------------------------------------------------------------- xtext
# decode_xtext and encode_xtext live in smtpx._xtext (shared with the DSN parameters).


def mail_auth_param(value: str, *, authenticated: bool) -> str | None:
    """Read the ``AUTH=`` parameter of MAIL FROM (RFC 4954 5).

    Args:
        value: The parameter's value, xtext.
        authenticated: Whether this client has authenticated. From a client that has not,
            the parameter counts as ``AUTH=<>`` (it is still checked for syntax).

    Returns:
        The submitter's mailbox, or None for ``<>`` (unknown or not to be trusted).

    Raises:
        ValueError: Not xtext, or the decoded mailbox holds NUL, CR or LF
            (reply ``501 5.5.4``).
    """
    decoded = decode_xtext(value)
    if any(c in decoded for c in "\0\r\n"):
        raise ValueError("AUTH= mailbox holds NUL, CR or LF")
    if decoded == "<>" or not authenticated:
        return None
    return decoded


# --------------------------------------------------------------------------- throttling
DEFAULT_AUTH_BASE_DELAY = 1.0
"""Seconds to wait before the reply to the first failed AUTH; doubled for each further one."""
DEFAULT_AUTH_MAX_DELAY = 8.0
"""The longest delay before a failure reply."""
DEFAULT_MAX_AUTH_FAILURES_PER_CONNECTION = 3
"""Failed AUTHs on one connection before ``421 4.7.0`` and close (RFC 4954 9)."""
DEFAULT_MAX_AUTH_FAILURES_PER_ADDRESS = 20
"""Failed AUTHs from one client address (IPv6: its /64) within the window before refusal."""
DEFAULT_AUTH_FAILURE_WINDOW = 900.0
"""Seconds after an address's first counted failure when its count starts again at zero."""
DEFAULT_AUTH_MAX_TRACKED_ADDRESSES = 10_000
"""Addresses remembered at once; the least recently failing is forgotten first."""


@dataclass(frozen=True, slots=True)
class FailureVerdict:
    """What to do after a failed AUTH.

    Attributes:
        delay: Seconds to await (``asyncio.sleep``) before sending the failure reply.
        disconnect: Send ``AUTH_TOO_MANY_FAILURES`` (``421 4.7.0``) and close.
    """

    delay: float
    disconnect: bool


def _address_key(address: str) -> str:
    # One IPv6 user usually holds a whole /64, so failures count per /64.
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class AuthThrottle:
    """Failed-AUTH counters per client address, shared by the connections of one server.

    The delay before a failure reply is ``base_delay * 2 ** (k - 1)``, at most ``max_delay``,
    where k is the larger of the connection's and the address's failure counts. It only
    computes: the session awaits the delay, so the event loop never blocks. A success does not
    reset the address's count (one known account must not unlock guessing at others). Counts
    live in this process (each ``workers`` process has its own).

    Args:
        base_delay: See ``DEFAULT_AUTH_BASE_DELAY``.
        max_delay: See ``DEFAULT_AUTH_MAX_DELAY``.
        max_per_connection: See ``DEFAULT_MAX_AUTH_FAILURES_PER_CONNECTION``.
        max_per_address: See ``DEFAULT_MAX_AUTH_FAILURES_PER_ADDRESS``.
        window: See ``DEFAULT_AUTH_FAILURE_WINDOW``.
        max_addresses: See ``DEFAULT_AUTH_MAX_TRACKED_ADDRESSES``.
        clock: Monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        *,
        base_delay: float = DEFAULT_AUTH_BASE_DELAY,
        max_delay: float = DEFAULT_AUTH_MAX_DELAY,
        max_per_connection: int = DEFAULT_MAX_AUTH_FAILURES_PER_CONNECTION,
        max_per_address: int = DEFAULT_MAX_AUTH_FAILURES_PER_ADDRESS,
        window: float = DEFAULT_AUTH_FAILURE_WINDOW,
        max_addresses: int = DEFAULT_AUTH_MAX_TRACKED_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if min(max_per_connection, max_per_address, max_addresses) < 1:
            raise ValueError("failure limits must be at least 1")
        if base_delay < 0 or max_delay < base_delay or window <= 0:
            raise ValueError("need 0 <= base_delay <= max_delay and window > 0")
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_per_connection = max_per_connection
        self.max_per_address = max_per_address
        self.window = window
        self.max_addresses = max_addresses
        self._clock = clock
        # key -> [window start, failures]; ordered by last failure for eviction.
        self._addresses: collections.OrderedDict[str, list[float]] = collections.OrderedDict()

    def address_failures(self, address: str) -> int:
        """Failures counted for ``address`` (or its /64) in the current window."""
        slot = self._addresses.get(_address_key(address))
        if slot is None or self._clock() - slot[0] >= self.window:
            return 0
        return int(slot[1])

    def blocked(self, address: str) -> bool:
        """True if ``address`` reached ``max_per_address``: refuse AUTH (``421 4.7.0``)."""
        return self.address_failures(address) >= self.max_per_address

    def connection(self, address: str) -> ConnectionAuthThrottle:
        """The counter for one new connection from ``address``."""
        return ConnectionAuthThrottle(self, address)

    def _fail_address(self, address: str) -> int:
        key = _address_key(address)
        now = self._clock()
        slot = self._addresses.pop(key, None)
        if slot is None or now - slot[0] >= self.window:
            slot = [now, 0.0]
        slot[1] += 1
        self._addresses[key] = slot
        while len(self._addresses) > self.max_addresses:
            self._addresses.popitem(last=False)
        return int(slot[1])

    def _delay(self, failures: int) -> float:
        return min(self.max_delay, self.base_delay * 2.0 ** min(failures - 1, 64))


class ConnectionAuthThrottle:
    """Failed-AUTH counting for one connection; made by ``AuthThrottle.connection``."""

    def __init__(self, throttle: AuthThrottle, address: str) -> None:
        self.throttle = throttle
        self.address = address
        self.failures = 0

    def blocked(self) -> bool:
        """True if AUTH must be refused before it starts (this connection or its address)."""
        return self.failures >= self.throttle.max_per_connection or self.throttle.blocked(
            self.address
        )

    def failure(self) -> FailureVerdict:
        """Count one failure; return the delay to await and whether to disconnect."""
        self.failures += 1
        per_address = self.throttle._fail_address(self.address)
        return FailureVerdict(
            delay=self.throttle._delay(max(self.failures, per_address)),
            disconnect=self.failures >= self.throttle.max_per_connection
            or per_address >= self.throttle.max_per_address,
        )
