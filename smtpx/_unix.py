"""Listening on a Unix-domain socket (``addr="unix:/path"``), for LMTP and SMTP alike.

LMTP has no authentication (RFC 2033): who may connect is decided by the socket file's mode,
so the mode is set explicitly (never left to the umask) before ``listen()``, and nothing at the
path is followed or deleted unless it is a stale socket, which is what a crashed server leaves.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat

__all__ = ["DEFAULT_UNIX_MODE", "UNIX_PREFIX", "UnixListener", "unix_path"]

UNIX_PREFIX = "unix:"
DEFAULT_UNIX_MODE = 0o660


def unix_path(addr: str) -> str | None:
    """The socket path of ``"unix:/path"``, or None for a TCP address.

    Raises:
        ValueError: ``unix:`` without a path, or a path holding NUL.
    """
    if not addr.startswith(UNIX_PREFIX):
        return None
    path = addr[len(UNIX_PREFIX) :]
    if not path or "\0" in path:
        raise ValueError(f"unix socket address needs a path: {addr!r}")
    return path


def _check_path(path: str) -> None:
    """Refuse anything at ``path`` but a stale socket, which is removed.

    Raises:
        OSError: A symlink, a regular file, a directory or any other non-socket is there (it
            is left alone, not followed), or a server is listening on the socket.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise OSError(f"{path} is a symbolic link; not following it")
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(f"{path} exists and is not a socket; not replacing it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        pass  # stale: nobody listens on it any more
    except FileNotFoundError:
        return  # removed meanwhile
    else:
        raise OSError(f"{path}: a server is already listening on this socket")
    finally:
        probe.close()
    again = os.lstat(path)
    if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino):
        raise OSError(f"{path} changed while it was checked; not replacing it")
    os.unlink(path)


class UnixListener:
    """One listening Unix socket and the file it created (removed by ``close``).

    Args:
        path: Where to create the socket.
        mode: Permission bits of the socket file (default 0660: owner and group).
        backlog: The ``listen()`` backlog.

    Raises:
        OSError: The path is taken (see ``_check_path``) or cannot be bound.
    """

    def __init__(self, path: str, mode: int = DEFAULT_UNIX_MODE, backlog: int = 1024) -> None:
        _check_path(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            try:
                # Before listen(): until then a connect() is refused, so no client ever gets in
                # under the umask's mode.
                os.chmod(path, mode)
                st = os.lstat(path)
                sock.listen(backlog)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(path)
                raise
        except BaseException:
            sock.close()
            raise
        sock.setblocking(False)
        self.path = path
        self.sock = sock
        self._identity = (st.st_dev, st.st_ino)

    def remove(self) -> None:
        """Delete the socket file, if it is still the one this listener created."""
        try:
            st = os.lstat(self.path)
        except OSError:
            return
        if (st.st_dev, st.st_ino) == self._identity:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
