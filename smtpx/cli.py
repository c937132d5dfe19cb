"""``smtpx`` / ``python -m smtpx``: a local SMTP server that stores mail in a Maildir.

Ordinary mistakes (a bad flag value, a missing file, flags that need each other) end in one line
on stderr that names the flag and the value, and exit status 2, like argparse's own errors.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import ipaddress
import logging
import os
import signal
import socket
import ssl
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from . import IMPLEMENTATION, __version__
from ._unix import unix_path
from .auth import AuthFile, FileAuthenticator, check_username, hash_password
from .authres import authentication_results
from .authres._dns import DNS_CACHE_SIZE, default_resolver, resolver_at
from .forward import Forward, parse_backend_url
from .handler import Handler, Middleware, new_handler
from .hooks import filter_recipient_domains
from .maildir import MaildirHandler
from .middleware import add_received_header, add_return_path, logger, recover
from .server import (
    DEFAULT_MAX_ERRORS,
    DEFAULT_MAX_JUNK_COMMANDS,
    DEFAULT_MAX_MEMORY,
    DEFAULT_MAX_SIZE,
    DEFAULT_SPOOL_THRESHOLD,
    DEFAULT_TIMEOUT,
    LOOPBACK_NETWORKS,
    Server,
    parse_addr,
)

__all__ = ["UsageError", "build_parser", "build_server", "main"]

PACKAGE_DIR = Path(__file__).resolve().parent
"""Where this smtpx was imported from; ``--version`` names it, so a source tree is obvious."""

_log = logging.getLogger("smtpx.cli")


class UsageError(Exception):
    """A command-line mistake: ``main`` prints it as one line and exits with status 2."""

    def __init__(self, flag: str, message: str) -> None:
        super().__init__(f"argument {flag}: {message}")


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage block) and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


class _Version(argparse.Action):
    """``--version`` on one line: argparse's own action wraps it at the terminal width."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        print(
            f"smtpx {__version__} ({IMPLEMENTATION} implementation, {PACKAGE_DIR})"
            f" event loop: {loop_description()}"
        )
        parser.exit()


def loop_description() -> str:
    """Which event loop ``serve`` runs on, and whether uvloop is there (for ``--version``).

    smtpx never picks uvloop by itself: on the issue 11 load runs it was faster than asyncio's
    selector loop in some 1 KiB cells, slower in others, and slower on 5 MiB messages
    (bench/README.md), so ``--loop uvloop`` is a choice, never a side effect of what happens
    to be installed.
    """
    try:
        version = importlib.metadata.version("uvloop")
    except importlib.metadata.PackageNotFoundError:
        return "asyncio (uvloop not installed)"
    return f"asyncio (uvloop {version} installed, not the default: --loop uvloop)"


# Argument types: argparse turns their ValueError/ArgumentTypeError into "argument --x: ...".
def _whole_number(text: str, minimum: int, bound: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be {bound}, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    return _whole_number(text, 1, "at least 1")


def _non_negative_int(text: str) -> int:
    return _whole_number(text, 0, "0 (no limit) or more")


def _byte_count(text: str) -> int:
    return _whole_number(text, 0, "0 or more")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):  # also refuses NaN
        raise argparse.ArgumentTypeError(f"must be 0 (no timeout) or more, got {text!r}")
    return value


def _address(text: str) -> str:
    try:
        if unix_path(text) is None:
            parse_addr(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be HOST:PORT or unix:/path, got {text!r}") from None
    return text


def _mode(text: str) -> int:
    try:
        mode = int(text, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777:
        raise argparse.ArgumentTypeError(f"must be octal permission bits like 660, got {text!r}")
    return mode


def _networks(text: str) -> list[str]:
    nets = [part.strip() for part in text.split(",") if part.strip()]
    for net in nets:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"not an IP network (CIDR) or address: {net!r}"
            ) from None
    if not nets:
        raise argparse.ArgumentTypeError(f"no network in {text!r}")
    return nets


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = _Parser(
        prog="smtpx",
        description="smtpx: a typed asyncio SMTP server. "
        "'smtpx serve' runs a local SMTP server that stores every message in a Maildir.",
    )
    parser.add_argument(
        "--version",
        action=_Version,
        nargs=0,
        help="show the version, the active implementation (cython or python) and the "
        "package folder, then exit",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser(
        "serve",
        help="run a local SMTP server that stores mail in a Maildir",
        description="Run an SMTP server that stores every accepted message in a Maildir "
        "(one file in <maildir>/new/ per message). SIGINT or SIGTERM shut it down gracefully.",
    )
    serve.add_argument(
        "--addr",
        type=_address,
        default="127.0.0.1:2525",
        metavar="HOST:PORT",
        help="address to listen on; ':PORT' means every interface, 'unix:/path' a Unix socket "
        "(default %(default)s)",
    )
    serve.add_argument(
        "--hostname",
        default=None,
        metavar="NAME",
        help="name in the greeting and the Received header (default: this machine's name)",
    )
    serve.add_argument(
        "--maildir",
        default="./maildir",
        metavar="DIR",
        help="Maildir folder, created if missing (default %(default)s); "
        "accepted and unused with --forward",
    )
    serve.add_argument(
        "--forward",
        default=None,
        metavar="URL",
        help="instead of the Maildir, relay each transaction to a backend as it happens "
        "(MAIL, each RCPT, the message; the backend's replies are the client's): "
        "smtp://HOST:PORT[?starttls=1], lmtp://HOST:PORT or lmtp+unix:///PATH",
    )
    serve.add_argument(
        "--forward-timeout",
        type=_seconds,
        default=60.0,
        metavar="SECONDS",
        help="with --forward: time for a whole backend reply, a connection or a free pool "
        "slot; past it the client gets 451 4.4.1 (default %(default)g)",
    )
    serve.add_argument(
        "--forward-pool",
        type=_positive_int,
        default=20,
        metavar="N",
        help="with --forward: backend connections per worker, at most (default %(default)s)",
    )
    serve.add_argument(
        "--unix-mode",
        type=_mode,
        default=0o660,
        metavar="OCTAL",
        help="permissions of a unix:/path socket, set whatever the umask (default 660)",
    )
    serve.add_argument(
        "--lmtp",
        action="store_true",
        help="speak LMTP (RFC 2033): LHLO, and one reply per recipient after the message",
    )
    serve.add_argument(
        "--dsn",
        action="store_true",
        help="advertise DSN and parse RET, ENVID, NOTIFY and ORCPT (RFC 3461)",
    )
    serve.add_argument(
        "--offer-requiretls",
        action="store_true",
        help="advertise REQUIRETLS on TLS connections (RFC 8689); needs --tls-cert",
    )
    serve.add_argument(
        "--max-size",
        type=_positive_int,
        default=DEFAULT_MAX_SIZE,
        metavar="BYTES",
        help="largest message accepted, advertised as SIZE (default %(default)s)",
    )
    serve.add_argument(
        "--spool-dir",
        metavar="DIR",
        help="where messages past --spool-threshold are written while they arrive (removed"
        " once stored; default: the system's temporary directory)",
    )
    serve.add_argument(
        "--spool-threshold",
        type=_byte_count,
        default=DEFAULT_SPOOL_THRESHOLD,
        metavar="BYTES",
        help="a message longer than this is spooled to --spool-dir instead of held in memory"
        " (default %(default)s)",
    )
    serve.add_argument(
        "--max-memory",
        type=_byte_count,
        default=DEFAULT_MAX_MEMORY,
        metavar="BYTES",
        help="message bytes all connections may hold in memory together; past it messages"
        " spool even under --spool-threshold (default %(default)s)",
    )
    serve.add_argument(
        "--max-recipients",
        type=_positive_int,
        default=100,
        metavar="N",
        help="RCPT TO commands accepted per message (default %(default)s)",
    )
    serve.add_argument(
        "--max-unrecognized",
        type=_positive_int,
        default=5,
        metavar="N",
        help="unknown commands at which the connection gets 421 and is closed "
        "(default %(default)s)",
    )
    serve.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="idle time allowed per command, DATA gap, TLS handshake or PROXY header; "
        "0 disables (default %(default)s)",
    )
    serve.add_argument(
        "--max-clients",
        type=_positive_int,
        default=100,
        metavar="N",
        help="open connections per process; the next one gets 421 (default %(default)s)",
    )
    serve.add_argument(
        "--max-clients-per-ip",
        type=_positive_int,
        default=None,
        metavar="N",
        help="connections from one address, loopback exempt (default: half of --max-clients)",
    )
    serve.add_argument(
        "--max-session-time",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="close a connection older than this with 421 4.4.2 (default 0: no limit)",
    )
    serve.add_argument(
        "--hard-error-limit",
        type=_non_negative_int,
        default=DEFAULT_MAX_ERRORS,
        metavar="N",
        help="error replies before the session is closed with 421 4.7.0; 0 disables"
        " (default %(default)s)",
    )
    serve.add_argument(
        "--junk-command-limit",
        type=_non_negative_int,
        default=DEFAULT_MAX_JUNK_COMMANDS,
        metavar="N",
        help="NOOP/RSET/VRFY/HELP commands between messages before 421 4.7.0; 0 disables"
        " (default %(default)s)",
    )
    serve.add_argument("--tls-cert", metavar="PEM", help="certificate chain; enables STARTTLS")
    serve.add_argument("--tls-key", metavar="PEM", help="private key for --tls-cert")
    serve.add_argument("--tls-always-on", action="store_true", help="implicit TLS (port 465 style)")
    serve.add_argument(
        "--require-tls", action="store_true", help="answer 530 to MAIL before STARTTLS"
    )
    serve.add_argument("--proxy", action="store_true", help="expect a PROXY v1/v2 header")
    serve.add_argument(
        "--proxy-trusted",
        type=_networks,
        action="append",
        metavar="CIDR[,CIDR...]",
        help="with --proxy: networks allowed to send the PROXY header; repeatable "
        "(default: loopback)",
    )
    serve.add_argument("--xclient", action="store_true", help="accept Postfix-style XCLIENT")
    serve.add_argument(
        "--xclient-trusted",
        type=_networks,
        action="append",
        metavar="CIDR[,CIDR...]",
        help="with --xclient: networks allowed to use XCLIENT; repeatable (default: loopback)",
    )
    serve.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        metavar="N",
        help="processes sharing the port through SO_REUSEPORT (default %(default)s)",
    )
    serve.add_argument(
        "--authres",
        action="store_true",
        help="check SPF, DKIM and DMARC and add an Authentication-Results header",
    )
    serve.add_argument(
        "--reject-dmarc", action="store_true", help="with --authres: 550 to DMARC p=reject failures"
    )
    serve.add_argument(
        "--dns-server",
        type=_address,
        metavar="HOST:PORT",
        help="with --authres: nameserver to ask (default: the system's)",
    )
    serve.add_argument(
        "--dns-cache",
        type=_non_negative_int,
        metavar="N",
        help=f"with --authres: DNS answers kept, each for its TTL (default {DNS_CACHE_SIZE}; "
        "0: no cache)",
    )
    serve.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="event loop; uvloop needs the smtpx[uvloop] extra (default %(default)s)",
    )
    serve.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="log level of the lines on stderr (default %(default)s)",
    )
    serve.add_argument(
        "--auth-file",
        metavar="FILE",
        help="offer AUTH PLAIN/LOGIN for the USER:$scrypt$... lines of FILE (smtpx passwd); "
        "over TLS only unless --auth-insecure; reloaded on SIGHUP",
    )
    serve.add_argument(
        "--auth-required", action="store_true", help="with --auth-file: 530 to MAIL before AUTH"
    )
    serve.add_argument(
        "--auth-insecure",
        action="store_true",
        help="with --auth-file: offer AUTH without TLS too (passwords in clear; logs a warning)",
    )
    serve.add_argument(
        "--accept-domain",
        action="append",
        default=[],
        metavar="DOMAIN",
        help="repeatable: RCPT to any other domain gets 550 5.7.1 (exact, case-insensitive; "
        "<postmaster> is always accepted)",
    )
    passwd = sub.add_parser(
        "passwd",
        help="print an auth-file line USER:$scrypt$... for a password read from stdin",
    )
    passwd.add_argument("user", help="the user name")
    return parser


def check_args(args: argparse.Namespace) -> None:
    """Check the flags that depend on each other or on files, before anything starts.

    Raises:
        UsageError: The first mistake found, naming the flag and the value.
    """
    if bool(args.tls_cert) != bool(args.tls_key):
        given, missing = (
            ("--tls-cert", "--tls-key") if args.tls_cert else ("--tls-key", "--tls-cert")
        )
        raise UsageError(given, f"needs {missing} as well")
    for flag in ("--tls-always-on", "--require-tls"):
        if getattr(args, flag[2:].replace("-", "_")) and not args.tls_cert:
            raise UsageError(flag, "needs a certificate: add --tls-cert PEM --tls-key PEM")
    for flag, path in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
        if path:
            try:
                with open(path, "rb"):
                    pass
            except OSError as exc:
                raise UsageError(flag, f"cannot read {path!r}: {exc.strerror or exc}") from None
    for flag, needs in (
        ("--proxy-trusted", "--proxy"),
        ("--xclient-trusted", "--xclient"),
        ("--dns-server", "--authres"),
        ("--dns-cache", "--authres"),
        ("--reject-dmarc", "--authres"),
    ):
        if getattr(args, flag[2:].replace("-", "_")) and not getattr(args, needs[2:]):
            raise UsageError(flag, f"only works with {needs}")
    if args.forward is not None:
        try:
            parse_backend_url(args.forward)
        except ValueError as exc:
            raise UsageError("--forward", str(exc)) from None
        if not args.forward_timeout > 0:
            raise UsageError("--forward-timeout", "must be more than 0 seconds")
    if args.loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
        raise UsageError("--loop", "uvloop is not installed (pip install 'smtpx[uvloop]')")
    if args.spool_dir is not None:
        try:  # a spool directory that does not take files fails here, not at the first message
            with tempfile.TemporaryFile(dir=args.spool_dir):
                pass
        except OSError as exc:
            detail = exc.strerror or exc
            raise UsageError(
                "--spool-dir", f"cannot write in {args.spool_dir!r}: {detail}"
            ) from None


def _tls_context(cert: str, key: str) -> ssl.SSLContext:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        tls.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc.strerror or str(exc)
        raise UsageError(
            "--tls-cert/--tls-key",
            f"{cert!r} and {key!r} are not a PEM certificate chain and its key ({reason})",
        ) from None
    return tls


def _flatten(groups: list[list[str]] | None) -> list[str] | None:
    return None if groups is None else [net for group in groups for net in group]


def build_server(args: argparse.Namespace) -> Server:
    """Make the Maildir server that ``args`` describe.

    Raises:
        UsageError: A flag's value cannot be used (see ``check_args``; also a Maildir that
            cannot be created and a certificate that does not load).
    """
    check_args(args)
    tls = _tls_context(args.tls_cert, args.tls_key) if args.tls_cert else None
    forward: Forward | None = None
    handler: Handler | MaildirHandler
    if args.forward is not None:
        forward = Forward(
            args.forward,
            timeout=args.forward_timeout,
            pool_size=args.forward_pool,
            ehlo_name=args.hostname or socket.gethostname(),
        )
        handler = new_handler(forward.data)
    else:
        try:
            handler = MaildirHandler(args.maildir)
        except OSError as exc:
            raise UsageError(
                "--maildir", f"cannot use {args.maildir!r} as a Maildir: {exc.strerror or exc}"
            ) from None
    middlewares: list[Middleware] = [logger(), recover]
    hostname = args.hostname or socket.gethostname()
    if args.authres:
        cache = DNS_CACHE_SIZE if args.dns_cache is None else args.dns_cache
        if args.dns_server:
            host, port = parse_addr(args.dns_server)
            resolver = resolver_at(host or "127.0.0.1", port, cache_size=cache)
        else:
            resolver = default_resolver(cache)
        middlewares.append(
            authentication_results(hostname, resolver=resolver, reject_dmarc=args.reject_dmarc)
        )
    # Prepended headers stack up: Return-Path ends on top, then Received, then the results.
    # Return-Path belongs to the final delivery (RFC 5321 4.4), not to a relay hop.
    middlewares += [add_received_header()] if forward else [add_received_header(), add_return_path]
    authenticator: FileAuthenticator | None = None
    if args.auth_file:
        if tls is None and not args.auth_insecure:
            raise UsageError(
                "--auth-file", "needs --tls-cert PEM --tls-key PEM, or --auth-insecure"
            )
        try:
            authenticator = FileAuthenticator(AuthFile(args.auth_file))
        except (OSError, ValueError) as exc:
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise UsageError("--auth-file", f"cannot use {args.auth_file!r}: {detail}") from None
    else:
        for flag in ("--auth-required", "--auth-insecure"):
            if getattr(args, flag[2:].replace("-", "_")):
                raise UsageError(flag, "goes with --auth-file")
    hooks: list[object] = []
    if args.accept_domain:
        hooks.append(filter_recipient_domains(*args.accept_domain))
    if forward is not None:
        hooks.append(forward)  # last: the backend sees only what every other hook accepted
    return Server(
        hostname=hostname,
        addr=args.addr,
        handler=handler,
        middlewares=middlewares,
        tls=tls,
        tls_always_on=args.tls_always_on,
        require_tls=args.require_tls,
        max_size=args.max_size,
        spool_dir=args.spool_dir,
        spool_threshold=args.spool_threshold,
        max_memory=args.max_memory,
        timeout=args.timeout,
        max_clients=args.max_clients,
        max_clients_per_ip=args.max_clients_per_ip,
        max_session_time=args.max_session_time,
        max_errors=args.hard_error_limit,
        max_junk_commands=args.junk_command_limit,
        xclient_on=args.xclient,
        proxy_on=args.proxy,
        max_recipients=args.max_recipients,
        max_unrecognized_commands=args.max_unrecognized,
        workers=args.workers,
        lmtp=args.lmtp,
        dsn=args.dsn,
        offer_requiretls=args.offer_requiretls,
        unix_mode=args.unix_mode,
        proxy_trusted=_flatten(args.proxy_trusted) or LOOPBACK_NETWORKS,
        xclient_trusted=_flatten(args.xclient_trusted) or LOOPBACK_NETWORKS,
        hooks=hooks,
        authenticator=authenticator,
        auth_required=args.auth_required,
        auth_allow_insecure=args.auth_insecure,
    )


def _reload_on_sighup(auth_file: AuthFile) -> None:
    """SIGHUP re-reads the auth file; a bad file keeps the old users (and is logged)."""
    log = logging.getLogger("smtpx")

    def reload(_signum: int, _frame: object) -> None:
        try:
            auth_file.reload()
        except (OSError, ValueError) as exc:
            log.error("auth file not reloaded, the old users stay: %s", exc)
        else:
            log.info("auth file reloaded: %d users", len(auth_file))

    # A plain handler (not the loop's): it runs between bytecodes in the main thread, reads a
    # small file and parses it, no hashing. Worker processes inherit it: send SIGHUP to each.
    signal.signal(signal.SIGHUP, reload)


PASSWD_MAX_LENGTH = 4096
"""Longest password ``smtpx passwd`` reads, in bytes of UTF-8."""


def passwd(user: str) -> int:
    """``smtpx passwd USER``: read a password, print ``USER:$scrypt$...`` (an auth-file line).

    On a terminal the password is asked for twice without echo; otherwise the first line of
    stdin is the password (its line ending removed, nothing else), and nothing is prompted.
    """
    import getpass  # noqa: PLC0415 (only this subcommand needs it)

    try:
        check_username(user)
    except ValueError as exc:
        print(f"smtpx passwd: {exc}", file=sys.stderr)
        return 2
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("smtpx passwd: the passwords differ", file=sys.stderr)
            return 1
    else:
        raw = sys.stdin.buffer.readline(PASSWD_MAX_LENGTH + 2)
        raw = raw[:-2] if raw.endswith(b"\r\n") else raw.removesuffix(b"\n")
        if len(raw) > PASSWD_MAX_LENGTH:
            print(f"smtpx passwd: longer than {PASSWD_MAX_LENGTH} bytes", file=sys.stderr)
            return 1
        try:
            password = raw.decode("utf-8")
        except UnicodeDecodeError:
            print("smtpx passwd: the password is not UTF-8", file=sys.stderr)
            return 1
    if not password:
        print("smtpx passwd: empty password", file=sys.stderr)
        return 1
    print(f"{user}:{hash_password(password)}")
    return 0


def _fail(message: str) -> NoReturn:
    print(f"smtpx serve: error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``smtpx`` command."""
    args = build_parser().parse_args(argv)
    if args.command == "passwd":
        return passwd(args.user)
    # The logger's name already says smtpx; the messages do not repeat it.
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        server = build_server(args)
    except UsageError as exc:
        _fail(str(exc))
    if isinstance(server.authenticator, FileAuthenticator):
        _reload_on_sighup(server.authenticator.auth_file)
    from ._runner import run  # noqa: PLC0415 (keeps `--help` and `--version` light)

    _log.info(
        "%s (smtpx %s, %s implementation)",
        f"forwarding mail to {args.forward}"
        if args.forward
        else f"storing mail in Maildir {os.path.abspath(args.maildir)}",
        __version__,
        IMPLEMENTATION,
    )
    try:
        run(server, "uvloop" if args.loop == "uvloop" else None)
    except OSError as exc:
        _fail(f"argument --addr: cannot listen on {args.addr!r}: {exc.strerror or exc}")
    return 0
