"""smtpx.auth: scrypt hashes, the auth file, the file authenticator, SASL, xtext, throttling."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import smtpx.auth as auth_module
from smtpx.auth import (
    AUTH_BAD_BASE64,
    AUTH_CANCELLED,
    AUTH_INVALID_CREDENTIALS,
    AUTH_LINE_TOO_LONG,
    AUTH_UNKNOWN_MECHANISM,
    MECHANISMS,
    SASL_LINE_MAX_LENGTH,
    Authenticator,
    AuthFile,
    AuthThrottle,
    FileAuthenticator,
    PlainMechanism,
    SaslChallenge,
    SaslCredentials,
    SaslError,
    SaslExchange,
    SaslMechanism,
    ScryptHash,
    TemporaryAuthError,
    decode_xtext,
    encode_xtext,
    hash_password,
    load_auth_file,
    mail_auth_param,
    parse_auth_lines,
    verify_password,
)
from tests.scaling import assert_linear

ROOT = Path(__file__).resolve().parent.parent
FAST = {"ln": 10, "r": 8, "p": 1}  # 1 MiB, a few ms: the tests' hashes
PASSWORD = "correct horse battery staple"
PHC_RE = re.compile(r"\$scrypt\$ln=(\d+),r=(\d+),p=(\d+)\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)")


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def unpad(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


# ------------------------------------------------------------------------ hashing
def test_hash_is_phc_scrypt_with_unpadded_standard_base64() -> None:
    phc = hash_password(PASSWORD)
    match = PHC_RE.fullmatch(phc)
    assert match is not None, phc
    ln, r, p, salt, digest = match.groups()
    assert (ln, r, p) == ("14", "8", "1")
    assert "=" not in salt + digest
    # Recompute with hashlib directly: the string means exactly what it says.
    expected = hashlib.scrypt(
        PASSWORD.encode(), salt=unpad(salt), n=2**14, r=8, p=1, maxmem=64 << 20, dklen=32
    )
    assert unpad(digest) == expected
    assert len(unpad(salt)) == 16


def test_salt_is_random() -> None:
    assert hash_password(PASSWORD, **FAST) != hash_password(PASSWORD, **FAST)


def test_verify_password() -> None:
    phc = hash_password(PASSWORD, **FAST)
    assert verify_password(phc, PASSWORD)
    assert verify_password(phc, PASSWORD.encode())
    assert not verify_password(phc, PASSWORD + " ")
    assert not verify_password(phc, "")
    assert not verify_password(phc, "\udcff")  # a lone surrogate neither matches nor raises


def test_unicode_password_hashed_as_utf8() -> None:
    phc = hash_password("pässwörd", **FAST)
    assert verify_password(phc, "pässwörd".encode())
    assert not verify_password(phc, "pässwörd".encode("latin-1"))


def test_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert not verify_password(hash_password(PASSWORD, **FAST), "wrong")
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ("ln=21,r=1,p=1", "ln=21"),
        ("ln=9,r=8,p=1", "ln=9"),
        ("ln=17,r=16,p=1", "N\\*r\\*p"),  # 256 MiB
        ("ln=14,r=8,p=16", "N\\*r\\*p"),
        ("ln=10,r=65,p=1", "r=65"),
        ("ln=10,r=8,p=17", "p=17"),
        ("ln=10,r=0,p=1", "ln=L,r=R,p=P"),
        ("ln=010,r=8,p=1", "ln=L,r=R,p=P"),
        ("r=8,ln=10,p=1", "ln=L,r=R,p=P"),
        ("ln=99999999999,r=8,p=1", "ln=L,r=R,p=P"),
    ],
)
def test_absurd_or_malformed_parameters_are_refused(params: str, reason: str) -> None:
    salt, digest = "c2FsdHNhbHRzYWx0", "A" * 43
    with pytest.raises(ValueError, match=reason):
        ScryptHash.parse(f"$scrypt${params}${salt}${digest}")


@pytest.mark.parametrize(
    "phc",
    [
        "$scrypt$ln=10,r=8,p=1$c2FsdHNhbHRzYWx0$" + "A" * 42 + "=",  # padded
        "$scrypt$ln=10,r=8,p=1$c2FsdA$" + "A" * 43,  # 4-byte salt
        "$scrypt$ln=10,r=8,p=1$c2FsdHNhbHRzYWx0$AAAA",  # 3-byte hash
        "$scrypt$ln=10,r=8,p=1$c2Fs-HNhbHRzYWx0$" + "A" * 43,  # urlsafe alphabet
        "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$" + "A" * 43,
        "scrypt$ln=10,r=8,p=1$c2FsdHNhbHRzYWx0$" + "A" * 43,
        "$scrypt$ln=10,r=8,p=1$c2FsdHNhbHRzYWx0",
    ],
)
def test_malformed_phc_is_refused_without_quoting_it(phc: str) -> None:
    with pytest.raises(ValueError) as caught:
        ScryptHash.parse(phc)
    assert "c2Fs" not in str(caught.value) and "AAAA" not in str(caught.value)


def test_hash_password_refuses_absurd_parameters() -> None:
    with pytest.raises(ValueError, match="N\\*r\\*p"):
        hash_password(PASSWORD, ln=20, r=8)


def test_scrypt_hash_round_trip_and_repr_hides_material() -> None:
    phc = hash_password(PASSWORD, **FAST)
    entry = ScryptHash.parse(phc)
    assert str(entry) == phc
    assert entry.salt.hex() not in repr(entry) and "salt" not in repr(entry)
    assert entry.memory == 128 * 8 * (1024 + 1 + 2)


# ------------------------------------------------------------------------ auth file
def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_auth_file_lines_comments_blank_lines_crlf(tmp_path: Path) -> None:
    alice, bob = hash_password("a-pass", **FAST), hash_password("b-pass", **FAST)
    path = write(
        tmp_path / "users",
        f"# smtpx users\r\n\r\nalice:{alice}\r\n   \n  # indented comment\n"
        f"bob@example.org : {bob}\n",
    )
    users = load_auth_file(path)
    assert users.users() == ["alice", "bob@example.org"]
    assert len(users) == 2 and "alice" in users and "Alice" not in users
    entry = users.get("alice")
    assert entry is not None and entry.verify("a-pass")
    assert users.get("carol") is None


def test_user_name_may_hold_a_colon() -> None:
    entries = parse_auth_lines(f"urn:x:alice:{hash_password('p', **FAST)}\n")
    assert list(entries) == ["urn:x:alice"]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("alice:$scrypt$ln=20,r=8,p=1$c2FsdHNhbHRzYWx0$" + "A" * 43, "N\\*r\\*p"),
        ("alice:$scrypt$ln=10,r=8,p=64$c2FsdHNhbHRzYWx0$" + "A" * 43, "p=64"),
        ("bob:hunter2", "not a \\$scrypt"),  # a plain password by mistake
        ("just-a-name", "expected USER"),
        (":$scrypt$ln=10,r=8,p=1$c2FsdHNhbHRzYWx0$" + "A" * 43, "empty user"),
        ("#bob:x", None),  # a comment: no error
    ],
)
def test_bad_line_is_refused_naming_the_line(line: str, reason: str | None) -> None:
    text = f"# users\ncarol:{hash_password('c', **FAST)}\n{line}\n"
    if reason is None:
        assert list(parse_auth_lines(text, "users.txt")) == ["carol"]
        return
    with pytest.raises(ValueError, match=f"^users.txt:3: .*{reason}") as caught:
        parse_auth_lines(text, "users.txt")
    assert "hunter2" not in str(caught.value) and "c2Fs" not in str(caught.value)


def test_duplicate_user_is_refused() -> None:
    phc = hash_password("p", **FAST)
    with pytest.raises(ValueError, match=":2: duplicate user"):
        parse_auth_lines(f"alice:{phc}\nalice:{phc}\n")


def test_reload_swaps_only_a_valid_file(tmp_path: Path) -> None:
    path = write(tmp_path / "users", f"alice:{hash_password('a', **FAST)}\n")
    users = AuthFile(path)
    write(path, f"alice:{hash_password('a2', **FAST)}\nbob:{hash_password('b', **FAST)}\n")
    users.reload()
    assert users.users() == ["alice", "bob"]
    new_alice = users.get("alice")
    assert new_alice is not None and new_alice.verify("a2")
    write(path, "alice:$scrypt$ln=30,r=8,p=1$c2FsdHNhbHRzYWx0$" + "A" * 43 + "\n")
    with pytest.raises(ValueError, match=":1: scrypt ln=30"):
        users.reload()
    assert users.users() == ["alice", "bob"]  # still serving the last good file
    path.unlink()
    with pytest.raises(OSError):
        users.reload()
    assert len(users) == 2


def test_dummy_entry_has_the_files_common_parameters(tmp_path: Path) -> None:
    lines = [f"u{i}:{hash_password('x', ln=11, r=4, p=1)}" for i in range(3)]
    lines.append(f"odd:{hash_password('x', ln=10, r=8, p=2)}")
    users = AuthFile(write(tmp_path / "users", "\n".join(lines)))
    dummy = users.dummy
    assert (dummy.ln, dummy.r, dummy.p, len(dummy.digest)) == (11, 4, 1, 32)
    empty = AuthFile(write(tmp_path / "empty", "# nobody yet\n"))
    assert (empty.dummy.ln, empty.dummy.r, empty.dummy.p) == (14, 8, 1)


# ------------------------------------------------------------------------ FileAuthenticator
@pytest.fixture
def users(tmp_path: Path) -> AuthFile:
    return AuthFile(
        write(
            tmp_path / "users",
            f"alice:{hash_password(PASSWORD, **FAST)}\nbob:{hash_password('bob-pw', **FAST)}\n",
        )
    )


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_file_authenticator_is_an_authenticator(users: AuthFile) -> None:
    checker: Authenticator = FileAuthenticator(users)  # mypy checks the Protocol here

    async def plain_function(mech: str, user: str, password: str, authzid: str) -> str | None:
        return user

    also: Authenticator = plain_function
    assert run(also("PLAIN", "x", "y", "")) == "x"
    assert run(checker("PLAIN", "alice", PASSWORD, "")) == "alice"


def test_file_authenticator_verdicts(users: AuthFile) -> None:
    checker = FileAuthenticator(users)

    async def main() -> list[str | None]:
        return [
            await checker("PLAIN", "alice", PASSWORD, ""),
            await checker("LOGIN", "alice", PASSWORD, ""),
            await checker("PLAIN", "alice", "wrong", ""),
            await checker("PLAIN", "mallory", PASSWORD, ""),
            await checker("PLAIN", "alice", PASSWORD, "alice"),
            await checker("PLAIN", "alice", PASSWORD, "bob"),  # RFC 4616 2: not allowed
            await checker("CRAM-MD5", "alice", PASSWORD, ""),
        ]

    try:
        assert run(main()) == ["alice", "alice", None, None, "alice", None, None]
    finally:
        checker.close()


def test_authorize_hook_allows_another_identity(users: AuthFile) -> None:
    checker = FileAuthenticator(users, authorize=lambda user, as_: (user, as_) == ("alice", "bob"))
    assert run(checker("PLAIN", "alice", PASSWORD, "bob")) == "bob"
    assert run(checker("PLAIN", "alice", "wrong", "bob")) is None
    assert run(checker("PLAIN", "bob", "bob-pw", "alice")) is None
    checker.close()


class ScryptSpy:
    """Stands in for hashlib.scrypt; records each call and can hold the worker."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.calls: list[tuple[str, int, int, int, int]] = []
        self.gate = gate
        self.real: Callable[..., bytes] = hashlib.scrypt

    def __call__(self, password: bytes, **kw: Any) -> bytes:
        self.calls.append((threading.current_thread().name, kw["n"], kw["r"], kw["p"], kw["dklen"]))
        if self.gate is not None:
            assert self.gate.wait(10)
        return self.real(password, **kw)


def test_unknown_user_costs_the_same_scrypt_off_the_loop(
    users: AuthFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = ScryptSpy()
    monkeypatch.setattr(hashlib, "scrypt", spy)
    checker = FileAuthenticator(users)
    assert run(checker("PLAIN", "alice", "wrong", "")) is None
    assert run(checker("PLAIN", "nobody", "wrong", "")) is None
    checker.close()
    (known_thread, *known), (unknown_thread, *unknown) = spy.calls
    assert known == unknown == [1024, 8, 1, 32]
    assert known_thread.startswith("smtpx-scrypt") and unknown_thread.startswith("smtpx-scrypt")


def test_pool_is_bounded_and_saturation_is_a_temporary_failure(
    users: AuthFile, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    gate = threading.Event()
    monkeypatch.setattr(hashlib, "scrypt", ScryptSpy(gate))
    checker = FileAuthenticator(users, workers=1, max_queued=1)

    async def main() -> list[object]:
        calls = [asyncio.ensure_future(checker("PLAIN", "alice", PASSWORD, "")) for _ in range(5)]
        await asyncio.sleep(0.05)
        # One runs, one waits, three were answered at once; the loop is free meanwhile.
        assert [c.done() for c in calls] == [False, False, True, True, True]
        ticks = 0
        for _ in range(10):
            await asyncio.sleep(0.001)
            ticks += 1
        assert ticks == 10
        gate.set()
        return list(await asyncio.gather(*calls, return_exceptions=True))

    results = run(main())
    checker.close()
    assert results[:2] == ["alice", "alice"]
    assert all(isinstance(r, TemporaryAuthError) for r in results[2:])
    assert TemporaryAuthError.response.code == 454
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # a flood of guesses is one line a minute, not one per guess


def test_cancelled_caller_keeps_its_slot_until_scrypt_ends(
    users: AuthFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = threading.Event()
    monkeypatch.setattr(hashlib, "scrypt", ScryptSpy(gate))
    checker = FileAuthenticator(users, workers=1, max_queued=0)

    async def main() -> str | None:
        first = asyncio.ensure_future(checker("PLAIN", "alice", PASSWORD, ""))
        await asyncio.sleep(0.05)
        first.cancel()
        await asyncio.sleep(0)
        with pytest.raises(TemporaryAuthError):  # the thread still computes the first
            await checker("PLAIN", "alice", PASSWORD, "")
        gate.set()
        for _ in range(200):
            if checker._slots.acquire(blocking=False):
                checker._slots.release()
                break
            await asyncio.sleep(0.01)
        result: str | None = await checker("PLAIN", "alice", PASSWORD, "")
        return result

    assert run(main()) == "alice"
    checker.close()


# ------------------------------------------------------------------------ SASL
def creds(result: SaslChallenge | SaslCredentials) -> SaslCredentials:
    assert isinstance(result, SaslCredentials), result
    return result


def challenge(result: SaslChallenge | SaslCredentials) -> SaslChallenge:
    assert isinstance(result, SaslChallenge), result
    return result


def sasl_error(func: Callable[[], object]) -> SaslError:
    with pytest.raises(SaslError) as caught:
        func()
    return caught.value


def test_plain_with_initial_response() -> None:
    _, result = SaslExchange.begin("PLAIN", b64(b"\0alice\0" + PASSWORD.encode()).decode())
    got = creds(result)
    assert (got.mechanism, got.authcid, got.password, got.authzid) == (
        "PLAIN",
        "alice",
        PASSWORD,
        "",
    )
    assert PASSWORD not in repr(got)


def test_plain_without_initial_response_sends_an_empty_challenge() -> None:
    exchange, result = SaslExchange.begin("plain")  # mechanism names are case-insensitive
    assert challenge(result).wire() == b"334 \r\n"
    got = creds(exchange.receive_line(b64(b"alice\0alice\0pw") + b"\r\n"))
    assert (got.authcid, got.authzid) == ("alice", "")  # authzid == authcid: no authzid


def test_plain_authzid_rules() -> None:
    line = b64(b"bob\0alice\0pw").decode()
    err = sasl_error(lambda: SaslExchange.begin("PLAIN", line))
    assert err.response is AUTH_INVALID_CREDENTIALS
    mechanisms = {"PLAIN": lambda: PlainMechanism(allow_authzid=True)}
    _, result = SaslExchange.begin("PLAIN", line, mechanisms=mechanisms)
    assert creds(result).authzid == "bob"


@pytest.mark.parametrize(
    "message",
    [
        b"\0al\rice\0pw",
        b"\0alice\n\0pw",
        b"bob\r\n\0alice\0pw",
        b"\0alice\0pw\0extra",  # a NUL inside a field
        b"alice\0pw",
        b"\0\0pw",
        b"\0alice\0",
        b"\0al\xffice\0pw",
        b"",
    ],
)
def test_plain_malformed_messages_fail_as_bad_credentials(message: bytes) -> None:
    err = sasl_error(lambda: SaslExchange.begin("PLAIN", b64(message).decode() or "="))
    assert err.response.code == 535 and err.response.enhanced == "5.7.8"
    assert b"alice" not in str(err).encode()


def test_equals_is_an_empty_initial_response() -> None:
    err = sasl_error(lambda: SaslExchange.begin("PLAIN", "="))
    assert err.response is AUTH_INVALID_CREDENTIALS  # empty PLAIN message, not "no response"
    exchange, result = SaslExchange.begin("LOGIN", "=")
    assert challenge(result).wire() == b"334 UGFzc3dvcmQ6\r\n"  # empty user name given
    assert sasl_error(lambda: exchange.receive_line(b64(b"pw"))).response.code == 535


def test_login_two_challenges() -> None:
    exchange, result = SaslExchange.begin("LOGIN")
    assert challenge(result).wire() == b"334 VXNlcm5hbWU6\r\n"
    assert challenge(exchange.receive_line(b64(b"alice"))).wire() == b"334 UGFzc3dvcmQ6\r\n"
    got = creds(exchange.receive_line(b64(PASSWORD.encode())))
    assert (got.mechanism, got.authcid, got.password, got.authzid) == (
        "LOGIN",
        "alice",
        PASSWORD,
        "",
    )
    with pytest.raises(RuntimeError):
        exchange.receive_line(b64(b"more"))


def test_login_initial_response_is_the_user_name() -> None:
    exchange, result = SaslExchange.begin("LOGIN", b64(b"alice").decode())
    assert challenge(result).data == b"Password:"
    assert creds(exchange.receive_line(b64(b"pw"))).authcid == "alice"


@pytest.mark.parametrize("name", [b"ali\rce", b"alice\n", b"al\0ice", b"\xc3"])
def test_login_user_name_with_nul_cr_lf_or_bad_utf8_refused(name: bytes) -> None:
    exchange, _ = SaslExchange.begin("LOGIN")
    assert sasl_error(lambda: exchange.receive_line(b64(name))).response.code == 535


def test_star_cancels() -> None:
    exchange, _ = SaslExchange.begin("LOGIN")
    assert sasl_error(lambda: exchange.receive_line(b"*\r\n")).response is AUTH_CANCELLED
    assert AUTH_CANCELLED.code == 501
    assert sasl_error(lambda: SaslExchange.begin("PLAIN", "*")).response is AUTH_CANCELLED


@pytest.mark.parametrize(
    "line", [b"YWxpY2U", b"YWxp Y2U=", b"YWxpY2U=\x00", b"YW=xpY2U=", b"YWxpY2U==", b"=", b"\xff"]
)
def test_bad_base64_is_501_5_5_2(line: bytes) -> None:
    exchange, _ = SaslExchange.begin("LOGIN")
    err = sasl_error(lambda: exchange.receive_line(line))
    assert err.response is AUTH_BAD_BASE64
    assert (err.response.code, err.response.enhanced) == (501, "5.5.2")


def test_sasl_line_cap_is_12288_octets() -> None:
    assert SASL_LINE_MAX_LENGTH == 12288
    longest = b64(b"\0alice\0" + b"p" * (9216 - 7))
    assert len(longest) == 12288
    exchange, _ = SaslExchange.begin("PLAIN")
    assert creds(exchange.receive_line(longest + b"\r\n")).password == "p" * 9209
    exchange, _ = SaslExchange.begin("PLAIN")
    err = sasl_error(lambda: exchange.receive_line(longest + b"A"))
    assert err.response is AUTH_LINE_TOO_LONG
    assert (err.response.code, err.response.enhanced) == (500, "5.5.6")


def test_unknown_mechanism_is_504() -> None:
    err = sasl_error(lambda: SaslExchange.begin("CRAM-MD5"))
    assert err.response is AUTH_UNKNOWN_MECHANISM
    assert (err.response.code, err.response.enhanced) == (504, "5.5.4")


def test_a_plugged_in_mechanism() -> None:
    class External:
        name = "EXTERNAL"

        def step(self, response: bytes | None) -> SaslChallenge | SaslCredentials:
            return SaslCredentials(self.name, "cert-user", "", (response or b"").decode())

    mechanisms: dict[str, Callable[[], SaslMechanism]] = {**MECHANISMS, "EXTERNAL": External}
    _, result = SaslExchange.begin("EXTERNAL", "=", mechanisms=mechanisms)
    assert creds(result).authcid == "cert-user"


B64_SAMPLES = [b"", b"YQ==", b"YQ", b"YQ=", b"Y Q==", b"YQ==YQ==", b"YWI=", b"YWJj", b"YR==",
               b"====", b"YWJ=", b"Y===", b"YWJjZA==", b"YWJj\n", b"+/+/", b"-_-_",
               # Padding after a whole quantum: strict mode took these before Python 3.13.
               b"++++=", b"YWJj=", b"YWJj====", b"++++===="]  # fmt: skip


def base64_verdict(func: Callable[[bytes], bytes], data: bytes) -> bytes | None:
    try:
        return func(data)
    except ValueError:
        return None


@pytest.mark.parametrize("data", B64_SAMPLES)
def test_base64_regex_path_agrees_with_strict_mode(data: bytes) -> None:
    strict = base64_verdict(auth_module._b64decode_strict, data)
    assert base64_verdict(auth_module._b64decode_regex, data) == strict


@given(st.binary(max_size=12).map(lambda b: bytes(c % 80 + 43 for c in b)))
def test_base64_regex_agrees_on_random_lines(data: bytes) -> None:
    strict = base64_verdict(auth_module._b64decode_strict, data)
    assert base64_verdict(auth_module._b64decode_regex, data) == strict


# ------------------------------------------------------------------------ xtext
@pytest.mark.parametrize(
    ("xtext", "text"),
    [
        ("alice@example.org", "alice@example.org"),
        ("e+3Dmc2@example.com", "e=mc2@example.com"),
        ("a+2Bb@x", "a+b@x"),
        ("a+2bb@x", "a+b@x"),  # lower-case hex accepted
        ("<>", "<>"),
        ("J+C3+B6rg@example.de", "Jörg@example.de"),
        ("", ""),
    ],
)
def test_decode_xtext(xtext: str, text: str) -> None:
    assert decode_xtext(xtext) == text


@pytest.mark.parametrize("xtext", ["a b", "a=b", "a+2", "a+G0", "a+", "jörg", "a\x7fb", "+FF"])
def test_bad_xtext_is_refused(xtext: str) -> None:
    with pytest.raises(ValueError):
        decode_xtext(xtext)


@given(st.text(max_size=40))
def test_xtext_round_trip(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return
    encoded = encode_xtext(text)
    assert all("!" <= c <= "~" and c != "=" for c in encoded)
    assert decode_xtext(encoded) == text


def test_mail_auth_param() -> None:
    assert mail_auth_param("e+3Dmc2@example.com", authenticated=True) == "e=mc2@example.com"
    assert mail_auth_param("<>", authenticated=True) is None
    # RFC 4954 5: from a client that has not authenticated it counts as AUTH=<>.
    assert mail_auth_param("alice@example.org", authenticated=False) is None
    for hostile in ("a+0D+0Ab@x", "a+00b@x", "a+0Ab@x"):
        with pytest.raises(ValueError, match="NUL, CR or LF"):
            mail_auth_param(hostile, authenticated=True)
    with pytest.raises(ValueError):
        mail_auth_param("a b", authenticated=False)


# ------------------------------------------------------------------------ throttle
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_delays_grow_and_the_connection_limit_disconnects() -> None:
    throttle = AuthThrottle(clock=Clock())
    conn = throttle.connection("192.0.2.1")
    verdicts = [conn.failure() for _ in range(3)]
    assert [v.delay for v in verdicts] == [1.0, 2.0, 4.0]
    assert [v.disconnect for v in verdicts] == [False, False, True]
    assert conn.blocked()


def test_address_limit_spans_connections_and_the_window_resets_it() -> None:
    clock = Clock()
    throttle = AuthThrottle(max_per_address=5, max_delay=3.0, window=600, clock=clock)
    first = throttle.connection("192.0.2.1")
    assert [first.failure().delay for _ in range(2)] == [1.0, 2.0]
    second = throttle.connection("192.0.2.1")
    # The address's count drives the delay of a fresh connection too (capped at max_delay).
    assert second.failure().delay == 3.0
    assert not throttle.blocked("192.0.2.1")
    verdict = throttle.connection("192.0.2.1").failure()
    assert not verdict.disconnect
    assert throttle.connection("192.0.2.1").failure().disconnect  # the fifth
    assert throttle.blocked("192.0.2.1") and throttle.connection("192.0.2.1").blocked()
    assert not throttle.blocked("192.0.2.2")
    clock.now += 600
    assert not throttle.blocked("192.0.2.1")
    assert throttle.connection("192.0.2.1").failure().delay == 1.0


def test_ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() -> None:
    throttle = AuthThrottle(max_per_address=2, clock=Clock())
    throttle.connection("2001:db8:1:2::1").failure()
    throttle.connection("2001:db8:1:2:ffff::9").failure()
    assert throttle.blocked("2001:db8:1:2::77")
    assert not throttle.blocked("2001:db8:1:3::1")
    throttle.connection("::ffff:192.0.2.7").failure()
    throttle.connection("192.0.2.7").failure()
    assert throttle.blocked("192.0.2.7")


def test_tracked_addresses_are_capped() -> None:
    throttle = AuthThrottle(max_addresses=3, max_per_address=1, clock=Clock())
    for i in range(5):
        throttle.connection(f"192.0.2.{i}").failure()
    assert len(throttle._addresses) == 3
    assert not throttle.blocked("192.0.2.0")  # the oldest was forgotten
    assert throttle.blocked("192.0.2.4")


def test_throttle_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError):
        AuthThrottle(max_per_connection=0)
    with pytest.raises(ValueError):
        AuthThrottle(base_delay=5, max_delay=1)


# ------------------------------------------------------------------------ no secrets in logs
def test_no_secret_reaches_a_log_line_at_debug(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "S3cret-Passw0rd"
    plain_line = b64(b"\0alice\0" + secret.encode())
    caplog.set_level(logging.DEBUG)
    path = write(tmp_path / "users", f"alice:{hash_password(secret, **FAST)}\n")
    checker = FileAuthenticator(path, workers=1, max_queued=0)

    async def main() -> None:
        await checker("PLAIN", "alice", secret, "")
        await checker("PLAIN", "alice", secret + "x", "")
        await checker("LOGIN", "nobody", secret, "")
        await checker("PLAIN", "alice\r\nforged", secret, "")
        running = asyncio.ensure_future(checker("PLAIN", "alice", secret, ""))
        await asyncio.sleep(0)  # it takes the only slot
        with pytest.raises(TemporaryAuthError):
            await checker("PLAIN", "alice", secret, "")
        await running

    run(main())
    checker.close()
    texts: list[str] = []
    for exc_line in (b"\0alice\0" + secret.encode() + b"\0", b"alice\0" + secret.encode()):
        with pytest.raises(SaslError) as caught:
            SaslExchange.begin("PLAIN", b64(exc_line).decode())
        texts.append(str(caught.value))
    _, result = SaslExchange.begin("PLAIN", plain_line.decode())
    texts.append(repr(result))
    write(path, f"alice:{secret}\n")  # a plain password pasted by mistake
    with pytest.raises(ValueError) as bad_file:
        AuthFile(path)
    texts.append(str(bad_file.value))
    logged = [record.getMessage() for record in caplog.records]
    assert any("alice" in line and "ok" in line for line in logged)  # it did log, at DEBUG
    assert any("saturated" in line for line in logged)
    assert "alice\\r\\nforged" in "\n".join(logged)  # escaped: no forged log line
    for text in logged + texts:
        assert secret not in text and plain_line.decode() not in text
        assert "\r" not in text and "\n" not in text


# ------------------------------------------------------------------------ smtpx passwd
def smtpx_passwd(*args: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    # Run the smtpx these tests imported (the installed wheel under tox), not the source tree.
    env = {**os.environ, "PYTHONPATH": str(Path(auth_module.__file__).resolve().parents[1])}
    return subprocess.run(
        [sys.executable, "-m", "smtpx", "passwd", *args],
        input=stdin,
        capture_output=True,
        env=env,
        cwd=Path(auth_module.__file__).resolve().parents[1],
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("stdin", [b"s3cret pass\n", b"s3cret pass\r\n", b"s3cret pass"])
def test_passwd_prints_a_line_that_verifies(stdin: bytes) -> None:
    done = smtpx_passwd("alice", stdin=stdin)
    assert done.returncode == 0, done.stderr
    assert done.stderr == b""  # no prompt when stdin is not a terminal
    out = done.stdout.decode()
    assert out.endswith("\n") and out.count("\n") == 1
    user, _, phc = out.strip().partition(":")
    assert user == "alice"
    assert PHC_RE.fullmatch(phc) and phc.startswith("$scrypt$ln=14,r=8,p=1$")
    assert verify_password(phc, "s3cret pass")
    assert not verify_password(phc, "s3cret pass\n")
    assert b"s3cret" not in done.stdout
    assert list(parse_auth_lines(out)) == ["alice"]  # the line goes into an auth file as is


def test_passwd_unicode_password() -> None:
    done = smtpx_passwd("jörg@example.de", stdin="pässwörd\n".encode())
    assert done.returncode == 0, done.stderr
    user, _, phc = done.stdout.decode().strip().rpartition(":")
    assert user == "jörg@example.de" and verify_password(phc, "pässwörd")


@pytest.mark.parametrize(
    ("user", "stdin", "code", "message"),
    [
        ("alice", b"", 1, b"empty password"),
        ("alice", b"\n", 1, b"empty password"),
        ("alice", b"\xff\xfe\n", 1, b"not UTF-8"),
        ("alice", b"x" * 5000 + b"\n", 1, b"longer than 4096"),
        ("#alice", b"pw\n", 2, b"'#'"),
        (" alice", b"pw\n", 2, b"whitespace"),
    ],
)
def test_passwd_refusals(user: str, stdin: bytes, code: int, message: bytes) -> None:
    done = smtpx_passwd(user, stdin=stdin)
    assert done.returncode == code
    assert message in done.stderr
    assert done.stdout == b""


# ------------------------------------------------------------------------ hostile input cost
def refused(func: Callable[[Any], object]) -> Callable[[Any], None]:
    def run_refused(arg: Any) -> None:
        with pytest.raises((ValueError, SaslError)):
            func(arg)

    return run_refused


def test_xtext_decoding_is_linear() -> None:
    assert_linear(lambda n: "+2B" * n + " ", refused(decode_xtext), n=40_000)


def test_base64_regex_path_is_linear_on_near_misses() -> None:
    # Whole quanta, then a misplaced "=" near the end: the worst case for a backtracking regex.
    def near_miss(n: int) -> bytes:
        return b"AAAA" * n + b"A=AAAAAA"

    assert_linear(near_miss, refused(auth_module._b64decode_regex), n=100_000)


def test_plain_decoding_is_linear_beyond_the_line_cap() -> None:
    def plain(message: bytes) -> None:
        PlainMechanism().step(message)

    assert_linear(lambda n: b"\0" * n, refused(plain), n=200_000)
