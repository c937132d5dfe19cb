"""``smtpx`` / ``python -m smtpx``: a local SMTP server that stores mail in a Maildir."""

from __future__ import annotations

import argparse
import logging
import socket
import ssl
import sys
from collections.abc import Sequence

from . import IMPLEMENTATION, __version__
from .authres import authentication_results
from .authres._dns import resolver_at
from .handler import Middleware
from .maildir import MaildirHandler
from .middleware import add_received_header, add_return_path, logger, recover
from .server import DEFAULT_MAX_SIZE, DEFAULT_TIMEOUT, Server, parse_addr

__all__ = ["build_parser", "build_server", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(prog="smtpx", description=__doc__)
    parser.add_argument(
        "--version",
        action="version",
        version=f"smtpx {__version__} ({IMPLEMENTATION} implementation)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run a local SMTP server that stores mail in a Maildir")
    serve.add_argument(
        "--addr",
        default="127.0.0.1:2525",
        help="HOST:PORT, or unix:/path for a Unix socket (default %(default)s)",
    )
    serve.add_argument(
        "--unix-mode",
        type=lambda text: int(text, 8),
        default=0o660,
        metavar="OCTAL",
        help="permissions of a unix:/path socket, whatever the umask (default 660)",
    )
    serve.add_argument(
        "--lmtp", action="store_true", help="speak LMTP (RFC 2033): LHLO, a reply per recipient"
    )
    serve.add_argument(
        "--dsn", action="store_true", help="advertise DSN and parse its parameters (RFC 3461)"
    )
    serve.add_argument(
        "--offer-requiretls",
        action="store_true",
        help="advertise REQUIRETLS on TLS connections (RFC 8689); needs --tls-cert",
    )
    serve.add_argument("--hostname", default=None, help="name in greeting and Received header")
    serve.add_argument(
        "--maildir", default="./maildir", help="Maildir folder (default %(default)s)"
    )
    serve.add_argument("--max-size", type=int, default=DEFAULT_MAX_SIZE, metavar="BYTES")
    serve.add_argument("--max-recipients", type=int, default=100, metavar="N")
    serve.add_argument("--max-unrecognized", type=int, default=5, metavar="N")
    serve.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS")
    serve.add_argument("--max-clients", type=int, default=100, metavar="N")
    serve.add_argument(
        "--max-clients-per-ip",
        type=int,
        default=None,
        metavar="N",
        help="connections from one address, loopback exempt (default: half of --max-clients)",
    )
    serve.add_argument(
        "--max-session-time",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="close a connection older than this with 421 4.4.2 (default 0: no limit)",
    )
    serve.add_argument("--tls-cert", metavar="PEM", help="certificate chain; enables STARTTLS")
    serve.add_argument("--tls-key", metavar="PEM", help="private key for --tls-cert")
    serve.add_argument("--tls-always-on", action="store_true", help="implicit TLS (port 465)")
    serve.add_argument("--require-tls", action="store_true", help="530 to MAIL before STARTTLS")
    serve.add_argument("--proxy", action="store_true", help="expect a PROXY v1/v2 header")
    serve.add_argument("--xclient", action="store_true", help="accept XCLIENT from loopback")
    serve.add_argument("--workers", type=int, default=1, metavar="N", help="SO_REUSEPORT processes")
    serve.add_argument(
        "--authres",
        action="store_true",
        help="check SPF, DKIM and DMARC and add an Authentication-Results header",
    )
    serve.add_argument(
        "--reject-dmarc", action="store_true", help="with --authres: 550 to DMARC p=reject failures"
    )
    serve.add_argument(
        "--dns-server", metavar="HOST:PORT", help="nameserver for --authres (default: system's)"
    )
    serve.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    serve.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    passwd = sub.add_parser(
        "passwd",
        help="print an auth-file line USER:$scrypt$... for a password read from stdin",
    )
    passwd.add_argument("user", help="the user name")
    return parser


def build_server(args: argparse.Namespace) -> Server:
    """Make the Maildir server that ``args`` describe."""
    tls: ssl.SSLContext | None = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            raise SystemExit("smtpx: --tls-cert and --tls-key go together")
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
    middlewares: list[Middleware] = [logger(), recover]
    hostname = args.hostname or socket.gethostname()
    if args.authres:
        resolver = None
        if args.dns_server:
            host, port = parse_addr(args.dns_server)
            resolver = resolver_at(host or "127.0.0.1", port)
        middlewares.append(
            authentication_results(hostname, resolver=resolver, reject_dmarc=args.reject_dmarc)
        )
    elif args.dns_server or args.reject_dmarc:
        raise SystemExit("smtpx: --dns-server and --reject-dmarc go with --authres")
    # Prepended headers stack up: Return-Path ends on top, then Received, then the results.
    middlewares += [add_received_header(), add_return_path]
    try:
        store = MaildirHandler(args.maildir)
    except OSError as exc:
        raise ValueError(f"--maildir {args.maildir}: {exc.strerror or exc}") from None
    return Server(
        hostname=hostname,
        addr=args.addr,
        handler=store,
        middlewares=middlewares,
        tls=tls,
        tls_always_on=args.tls_always_on,
        require_tls=args.require_tls,
        max_size=args.max_size,
        timeout=args.timeout,
        max_clients=args.max_clients,
        max_clients_per_ip=args.max_clients_per_ip,
        max_session_time=args.max_session_time,
        xclient_on=args.xclient,
        proxy_on=args.proxy,
        max_recipients=args.max_recipients,
        max_unrecognized_commands=args.max_unrecognized,
        workers=args.workers,
        lmtp=args.lmtp,
        dsn=args.dsn,
        offer_requiretls=args.offer_requiretls,
        unix_mode=args.unix_mode,
    )


PASSWD_MAX_LENGTH = 4096
"""Longest password ``smtpx passwd`` reads, in bytes of UTF-8."""


def passwd(user: str) -> int:
    """``smtpx passwd USER``: read a password, print ``USER:$scrypt$...`` (an auth-file line).

    On a terminal the password is asked for twice without echo; otherwise the first line of
    stdin is the password (its line ending removed, nothing else), and nothing is prompted.
    """
    import getpass  # noqa: PLC0415 (only this subcommand needs it)

    from .auth import check_username, hash_password  # noqa: PLC0415 (keeps `serve` light)

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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``smtpx`` command."""
    args = build_parser().parse_args(argv)
    if args.command == "passwd":
        return passwd(args.user)
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        server = build_server(args)
    except ValueError as exc:
        print(f"smtpx: {exc}", file=sys.stderr)
        return 2
    from ._runner import run  # noqa: PLC0415 (keeps `--help` and `--version` light)

    try:
        run(server, "uvloop" if args.loop == "uvloop" else None)
    except OSError as exc:
        print(f"smtpx: cannot listen on {args.addr}: {exc}", file=sys.stderr)
        return 1
    return 0
