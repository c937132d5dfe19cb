"""Message spooling: where a message's bytes live between the reader and the handler.

The DATA reader (``smtpx._reader_py``) keeps the judged output of a message in memory; the
session drains it (``Connection.drain_message``) every ``DRAIN_STEP`` bytes into a
``MessageBuffer``. The buffer keeps the pieces in memory until the message passes the server's
``spool_threshold``, or until all messages in flight together pass ``max_memory`` (a
``MemoryBudget`` shared by the sessions of one server); it then moves them to a ``Spool``, a
temporary file in ``spool_dir``, and writes every later piece there.

A write is at most one drain's worth (a read or two of the socket) and runs on the event loop,
as a pipe write would; nothing here ever fsyncs. A failed write (a full disk: ENOSPC, EDQUOT,
EIO) does not stop the upload: the client is read to the end of its data, so that the dialogue
stays in step, and then gets ``451 4.3.0``; the file is removed at once.

A ``Spool`` is an ordinary file that exists only while its message does: it is removed when
the upload is abandoned (client gone, RSET, timeout, shutdown, a refused message) and after the
handler returns. A process that is killed cannot remove its files; each file therefore holds an
exclusive ``flock`` while it is open, and ``remove_stale_spools`` (run when a server starts)
removes the files of the spool directory whose lock nobody holds any more.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import sys
import tempfile
from typing import BinaryIO

from ._abc import DataReaderLike

__all__ = ["DRAIN_STEP", "MemoryBudget", "MessageBuffer", "Spool", "remove_stale_spools"]

_PREFIX, _SUFFIX = "smtpx-", ".msg"


def _lock(fd: int) -> bool:
    """Take the file's exclusive lock without waiting; False if another holder has it."""
    if sys.platform == "win32":  # pragma: no cover - no flock; stale files stay
        return False
    import fcntl  # noqa: PLC0415 (POSIX only)

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def remove_stale_spools(directory: str | None) -> int:
    """Remove spool files left by a process that died; return how many.

    A file counts as left behind when it has a spool file's name, is a regular file of this
    user, and its lock is free: every live ``Spool`` holds its file's lock (in whichever
    process, worker or server made it), and the kernel drops the lock when the process dies.
    """
    if sys.platform == "win32":  # pragma: no cover
        return 0
    removed = 0
    try:
        entries = list(os.scandir(directory or tempfile.gettempdir()))
    except OSError:
        return 0
    for entry in entries:
        if not (entry.name.startswith(_PREFIX) and entry.name.endswith(_SUFFIX)):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            info = os.fstat(fd)
            if stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid() and _lock(fd):
                os.unlink(entry.path)
                removed += 1
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


# The session drains the reader once this many message bytes have piled up in it: a message
# under it is never copied out of the reader at all, and a reader holds at most this much plus
# one read of the socket.
DRAIN_STEP = 256 * 1024


class MemoryBudget:
    """The message bytes held in memory by all sessions of one server, against a cap.

    Args:
        cap: Bytes allowed in memory across every message in flight; a message whose bytes
            would pass it goes to a spool file instead.
    """

    __slots__ = ("cap", "used")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.used = 0


class Spool:
    """A message on disk: a temporary file in the spool directory, created ``O_EXCL``, 0600.

    Args:
        directory: Where the file is made; the system's temporary directory when None.

    Raises:
        OSError: The file cannot be created.
    """

    __slots__ = ("_fd", "path", "size")

    def __init__(self, directory: str | None = None) -> None:
        # mkstemp opens with O_CREAT | O_EXCL and mode 0600: never someone else's file.
        self._fd, self.path = tempfile.mkstemp(prefix=_PREFIX, suffix=_SUFFIX, dir=directory)
        self.size = 0
        # Held while the file is open: remove_stale_spools leaves it alone.
        _lock(self._fd)

    @property
    def closed(self) -> bool:
        """True once ``close()`` ran: the file is gone."""
        return self._fd < 0

    def write(self, data: bytes) -> None:
        """Append ``data`` (a short write is retried; an OSError is the caller's to handle)."""
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            self.size += written
            view = view[written:]

    def dup(self) -> int:
        """A new descriptor of the file, for a reader that outlives this object's use."""
        if self._fd < 0:
            raise ValueError("the spool file of this message was closed (the handler returned)")
        return os.dup(self._fd)

    def close(self) -> None:
        """Close the descriptor and remove the file (idempotent; never raises)."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(self.path)


class _View(io.RawIOBase):
    """A read-only, seekable view of ``prefix`` followed by ``fd``'s bytes from ``skip`` on.

    Reads use ``os.pread``, so views share no file position; the view owns ``fd``.
    """

    def __init__(self, prefix: bytes, fd: int, skip: int, size: int) -> None:
        super().__init__()
        self._prefix = prefix
        self._fd = fd
        self._skip = skip
        self._length = len(prefix) + size - skip
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._checkClosed()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._checkClosed()
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._length + offset
        else:
            raise ValueError(f"invalid whence ({whence})")
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]  # any buffer works
        self._checkClosed()
        out = memoryview(buffer).cast("B")
        pos, want = self._pos, min(len(out), max(0, self._length - self._pos))
        done = 0
        head = len(self._prefix)
        if pos < head and want:
            n = min(want, head - pos)
            out[:n] = self._prefix[pos : pos + n]
            done = n
        while done < want:
            offset = self._skip + pos + done - head
            chunk = os.pread(self._fd, want - done, offset)
            if not chunk:
                break  # the file is shorter than it was (never expected)
            out[done : done + len(chunk)] = chunk
            done += len(chunk)
        self._pos = pos + done
        return done

    def close(self) -> None:
        if not self.closed:
            fd, self._fd = self._fd, -1
            with contextlib.suppress(OSError):
                os.close(fd)
        super().close()


def open_view(prefix: bytes, spool: Spool, skip: int) -> BinaryIO:
    """A buffered binary file over ``prefix`` and the spool file from ``skip`` on."""
    raw = _View(prefix, spool.dup(), skip, spool.size)
    return io.BufferedReader(raw, buffer_size=65536)


def read_at(fd: int, size: int, offset: int) -> bytes:
    """``os.pread`` until ``size`` bytes or the end (runs in a worker thread)."""
    parts = []
    while size > 0:
        chunk = os.pread(fd, size, offset)
        if not chunk:
            break
        parts.append(chunk)
        size -= len(chunk)
        offset += len(chunk)
    return b"".join(parts)


class MessageBuffer:
    """One message's drained bytes: in memory, or spooled past the threshold or the budget.

    Args:
        source: What the bytes are drained from (the message's reader): the session tells
            by it that the message it buffers is still the one being received.
        budget: The server's shared in-memory budget.
        threshold: A message longer than this goes to a spool file.
        directory: The spool directory (None: the system's temporary directory).
    """

    __slots__ = (
        "_budget",
        "_directory",
        "_threshold",
        "failed",
        "mark",
        "memory",
        "parts",
        "source",
        "spool",
    )

    def __init__(
        self, source: DataReaderLike, budget: MemoryBudget, threshold: int, directory: str | None
    ) -> None:
        self.source = source
        self.mark = 0  # the reader's size at the last drain
        self._budget = budget
        self._threshold = threshold
        self._directory = directory
        self.parts: list[bytes] = []
        self.memory = 0  # bytes of ``parts``, counted in the budget
        self.spool: Spool | None = None
        self.failed: OSError | None = None  # a spool write failed: the message gets 451

    def delivered(self) -> bool:
        """True when ``source`` ended in a message (not refused, not cut short).

        A reader's ``result()`` raises for a message that was refused (too long, bare line
        end, NUL) or that has not ended (a transaction reset midway); it returns the rest of
        the message again, at no cost, for the one that produced the ``Message`` event.
        """
        try:
            self.source.result()
        except Exception:
            return False
        return True

    def add(self, chunks: list[bytes]) -> None:
        """Keep drained message bytes (never raises: a disk error is kept in ``failed``)."""
        if self.failed is not None or not chunks:
            return
        spool = self.spool
        if spool is None:
            size = sum(len(c) for c in chunks)
            budget = self._budget
            if self.memory + size <= self._threshold and budget.used + size <= budget.cap:
                self.parts += chunks
                self.memory += size
                budget.used += size
                return
            try:
                spool = self.spool = Spool(self._directory)
            except OSError as exc:
                self._fail(exc)
                return
            chunks = [*self.parts, *chunks]
            self._release()
        try:
            for chunk in chunks:
                spool.write(chunk)
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        self.failed = exc
        self._release()
        if self.spool is not None:
            self.spool.close()

    def _release(self) -> None:
        self._budget.used -= self.memory
        self.memory = 0
        self.parts = []

    def finish(self, rest: bytes) -> bytes:
        """The message ended with ``rest``: the in-memory message, or b"" once spooled."""
        if self.spool is None and self.failed is None:
            if not self.parts:
                return rest
            data = b"".join([*self.parts, rest])
            self.parts = [data]  # still counted in the budget until close()
            self.memory += len(rest)
            self._budget.used += len(rest)
            return data
        self.add([rest])
        return b""

    def close(self) -> None:
        """Give back the memory and remove the spool file (idempotent)."""
        self._release()
        if self.spool is not None:
            self.spool.close()
