"""Maildir storage: the handler behind ``smtpx serve``."""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import time
from pathlib import Path

from .envelope import Envelope
from .responses import SUCCESS_MESSAGE_QUEUED, Response

__all__ = ["MaildirHandler"]


class MaildirHandler:
    """Store each message in a Maildir (``tmp/`` then an atomic rename into ``new/``).

    The file is fsynced before the rename, so a 250 reply means the message is on disk. When
    storing fails (a full disk too) the partial file is removed from ``tmp/`` and the handler
    raises, which the session answers with ``451 4.3.0``. The message is written with
    ``envelope.write_to()``: a spooled message is copied file to file by the kernel, never
    read into memory.
    Calling the object stores one envelope; it is a plain function, so the server runs it in
    a worker thread.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Create ``tmp/``, ``new/`` and ``cur/`` under ``path`` as needed.

        Raises:
            OSError: ``path`` or one of its subfolders is not a folder, or cannot be made
                (e.g. ``NotADirectoryError`` when ``path`` is a file).
        """
        self.path = Path(path)
        for sub in ("tmp", "new", "cur"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)
        self._host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")
        self._seq = itertools.count(1)

    def __call__(self, envelope: Envelope) -> Response | None:
        """Store the message as one file; the reply is ``250 2.0.0 OK: queued``."""
        name = f"{time.time_ns()}.P{os.getpid()}Q{next(self._seq)}.{self._host}"
        tmp = self.path / "tmp" / name
        f = open(tmp, "xb")  # noqa: SIM115 (closed below; the unlink must follow the close)
        try:
            with f:
                envelope.write_to(f)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, self.path / "new" / name)
        except BaseException:
            # A full disk, an I/O error, a rename that failed: the client gets 451 (the handler
            # raised) and retries; a partial file must not stay behind in tmp/ (Maildir readers
            # clean tmp/ only after 36 hours).
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return SUCCESS_MESSAGE_QUEUED
