"""The message in pieces of about ``_CHUNK`` bytes, for BDAT or DATA, never held whole."""

from __future__ import annotations

from collections.abc import AsyncIterator

from smtpx.envelope import Envelope

_CHUNK = 65536


async def _message_chunks(envelope: Envelope) -> AsyncIterator[bytes]:
    """The message in pieces of about ``_CHUNK`` bytes, never held whole.

    ``envelope.chunks()`` reads a spooled message from its file in a worker thread; short
    pieces (the prepended headers come apart) are joined so that each BDAT carries a full
    chunk.
    """
    pending = b""
    async for piece in envelope.chunks(_CHUNK):
        if not pending and len(piece) >= _CHUNK:
            yield piece
            continue
        pending += piece
        if len(pending) >= _CHUNK:
            yield pending
            pending = b""
    if pending:
        yield pending
