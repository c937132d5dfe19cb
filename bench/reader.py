"""DATA reader throughput: pure and compiled twins against a copy ceiling and a readuntil loop.

Run by hand (never in tests), from the repository root after
``python setup.py build_ext --inplace``:
``PYTHONPATH=. python bench/reader.py [--size MiB] [--chunk KiB] [--rounds N]``.
Every number comes from this one process and one corpus: a message of ``--size`` MiB of
~78-byte CRLF lines, ~1 % of them dot-stuffed, fed in ``--chunk`` KiB pieces and followed by
the end marker and a pipelined ``QUIT``. Output: MB/s per reader (best of ``--rounds``), its
ratio to the ``bytes`` copy ceiling, and peak traced memory as a multiple of the message size.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import tracemalloc
from collections.abc import Callable

from smtpx._abc import DataReaderLike
from smtpx._reader_py import DataReader as PureReader

Reader = Callable[[list[bytes]], bytes]


def make_corpus(size: int, seed: int = 4) -> bytes:
    """About ``size`` bytes of message, CRLF lines, ~1 % starting with a (stuffed) dot."""
    rnd = random.Random(seed)
    words = [
        b"lorem",
        b"ipsum",
        b"dolor",
        b"sit",
        b"amet",
        b"consectetur",
        b"adipiscing",
        b"elit",
        b"sed",
        b"do",
        b"eiusmod",
        b"tempor",
        b"\xc3\xa5ngstr\xc3\xb6m",
    ]
    lines: list[bytes] = []
    total = 0
    while total < size:
        line = b" ".join(rnd.choice(words) for _ in range(12))[:76]
        if rnd.random() < 0.01:
            line = b".." + line  # a body line starting with "." arrives stuffed
        lines.append(line)
        total += len(line) + 2
    return b"\r\n".join(lines) + b"\r\n.\r\nQUIT\r\n"


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def twin_reader(cls: type[DataReaderLike]) -> Reader:
    def read(chunks: list[bytes]) -> bytes:
        reader = cls(1 << 40)
        for chunk in chunks:
            if reader.feed(chunk) < len(chunk):
                break
        return reader.result()

    return read


def copy_reader(chunks: list[bytes]) -> bytes:
    """The ceiling: keep each chunk, join once (what any reader must at least do)."""
    return b"".join([bytes(memoryview(c)) for c in chunks])


def readuntil_reader(chunks: list[bytes]) -> bytes:
    """aiosmtpd's loop: ``StreamReader.readuntil(b"\\r\\n")`` per line, unstuff, join."""

    async def run() -> bytes:
        stream = asyncio.StreamReader(limit=1 << 20)
        for chunk in chunks:
            stream.feed_data(chunk)
        stream.feed_eof()
        lines: list[bytes] = []
        while True:
            line = await stream.readuntil(b"\r\n")
            if line == b".\r\n":
                return b"".join(lines)
            if line.startswith(b"."):
                line = line[1:]
            lines.append(line)

    return asyncio.run(run())


def measure(read: Reader, chunks: list[bytes], rounds: int) -> tuple[float, bytes]:
    best = float("inf")
    out = b""
    for _ in range(rounds):
        start = time.perf_counter()
        out = read(chunks)
        best = min(best, time.perf_counter() - start)
    return best, out


def peak_ratio(read: Reader, chunks: list[bytes], size: int) -> float:
    tracemalloc.start()
    out = read(chunks)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del out
    return peak / size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=float, default=10.0, help="message MiB (default 10)")
    parser.add_argument("--chunk", type=int, default=64, help="chunk KiB (default 64)")
    parser.add_argument("--rounds", type=int, default=5, help="best of N (default 5)")
    args = parser.parse_args()
    corpus = make_corpus(int(args.size * (1 << 20)))
    chunks = chunked(corpus, args.chunk << 10)
    message_size = corpus.index(b"\r\n.\r\n") + 2
    readers: dict[str, Reader] = {"copy (ceiling)": copy_reader, "pure": twin_reader(PureReader)}
    try:
        from smtpx._speedups._reader import DataReader as CompiledReader  # noqa: PLC0415
    except ImportError:
        print("compiled twin not built: `python setup.py build_ext --inplace`")
    else:
        readers["compiled"] = twin_reader(CompiledReader)
    readers["readuntil (aiosmtpd-style)"] = readuntil_reader
    expected = readuntil_reader(chunks)
    stuffed = corpus.count(b"\r\n..")
    print(
        f"corpus: {len(corpus) / 1e6:.1f} MB, {len(chunks)} chunks of {args.chunk} KiB, "
        f"{stuffed} stuffed lines, best of {args.rounds}"
    )
    results: dict[str, float] = {}
    for name, read in readers.items():
        rounds = 1 if name.startswith("readuntil") else args.rounds
        seconds, out = measure(read, chunks, rounds)
        if name != "copy (ceiling)":
            assert out == expected, name
        results[name] = len(corpus) / seconds / 1e6
    ceiling = results["copy (ceiling)"]
    print(f"{'reader':28} {'MB/s':>9} {'x copy':>8} {'x readuntil':>12} {'peak mem':>9}")
    for name, read in readers.items():
        mbps = results[name]
        peak = peak_ratio(read, chunks, message_size)
        print(
            f"{name:28} {mbps:9.0f} {mbps / ceiling:8.3f} "
            f"{mbps / results['readuntil (aiosmtpd-style)']:12.1f} {peak:8.2f}x"
        )


if __name__ == "__main__":
    main()
