"""Backend URLs: parse ``smtp://``, ``lmtp://`` and ``lmtp+unix://`` into a ``BackendURL``."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True, slots=True)
class BackendURL:
    """A parsed backend URL.

    Attributes:
        lmtp: The backend speaks LMTP (RFC 2033), else SMTP.
        host: Host name or address; "" for a Unix socket.
        port: TCP port; 0 for a Unix socket.
        path: The Unix socket's path, or "".
        starttls: Upgrade with STARTTLS before the first transaction (SMTP only).
    """

    lmtp: bool
    host: str
    port: int
    path: str = ""
    starttls: bool = False

    def __str__(self) -> str:
        if self.path:
            return f"lmtp+unix://{self.path}"
        scheme = "lmtp" if self.lmtp else "smtp"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}{'?starttls=1' if self.starttls else ''}"


def parse_backend_url(url: str) -> BackendURL:
    """Parse ``smtp://host[:port][?starttls=1]``, ``lmtp://host[:port]`` or ``lmtp+unix:///path``.

    Raises:
        ValueError: Another scheme, no host, a bad port, an unknown query parameter, or
            ``starttls`` with LMTP; the message is one line.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("smtp", "lmtp", "lmtp+unix"):
        raise ValueError(f"{url!r}: the scheme must be smtp://, lmtp:// or lmtp+unix://")
    if parts.fragment or parts.username or parts.password:
        raise ValueError(f"{url!r}: no user, password or #fragment allowed")
    try:
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ValueError(f"{url!r}: cannot read the query") from None
    unknown = set(query) - {"starttls"}
    if unknown:
        raise ValueError(f"{url!r}: unknown parameter {sorted(unknown)[0]!r}")
    starttls = False
    if "starttls" in query:
        value = query["starttls"][-1].lower()
        if value not in ("0", "1", "yes", "no", "true", "false"):
            raise ValueError(f"{url!r}: starttls must be 1 or 0")
        starttls = value in ("1", "yes", "true")
    if scheme == "lmtp+unix":
        if parts.netloc or not parts.path.startswith("/") or parts.query:
            raise ValueError(f"{url!r}: write lmtp+unix:///absolute/path/to/socket")
        return BackendURL(lmtp=True, host="", port=0, path=parts.path)
    if parts.path not in ("", "/"):
        raise ValueError(f"{url!r}: no path allowed after host:port")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{url!r}: the port must be a number 1..65535") from None
    host = parts.hostname or ""
    if not host:
        raise ValueError(f"{url!r}: no host")
    if starttls and scheme == "lmtp":
        raise ValueError(f"{url!r}: starttls is for smtp:// backends")
    return BackendURL(
        lmtp=scheme == "lmtp",
        host=host,
        port=port or (24 if scheme == "lmtp" else 25),
        starttls=starttls,
    )
