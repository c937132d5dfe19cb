"""Per-message budget: where one 1 KiB message's instructions (and microseconds) go, step by step.

Issue 11, scope item 1. Drives smtpx's real session code (``smtpx._session.Session`` with the
real protocol core, reader, envelope and handler chain) through the same lockstep exchange
smtp-source makes (no pipelining: MAIL, RCPT, DATA, then the body and the dot), and attributes
the cost to each step. Everything is bounded in count and runs on loopback or in-process only.

Two phases, run in a child process per build (``SMTPX_NO_EXTENSIONS=1`` for the pure one):

``session``
    One Session on a fake transport (bench/hooks_cost.py's approach), fed through the
    ``get_buffer``/``buffer_updated`` pair as asyncio's selector transport does. One read per
    step; the body (1024 bytes) and the dot are fed as two reads so that the reader and the end
    of data can be told apart, and the handler marks its own entry, which splits the dot into
    "end of data up to the handler" and "after the handler: reply, flush, resume". A second
    loop feeds a read that holds no complete line: what any read costs the session by itself.
``loop``
    The same Session behind a real asyncio selector transport on a ``socketpair``, with an
    in-process lockstep client; each server step is exactly one ``loop._run_once()`` (epoll,
    ``recv_into``, the session, the reply's ``send()``). The body and the dot go in one send,
    as smtp-source sends them. It also times a bare ``transport.write`` of a reply.

Between steps the driver calls a marker (``os.getppid``, which nothing else calls). Under
``--tool callgrind`` valgrind dumps the instruction counts at every marker
(``--dump-before=os_getppid``), so every step's instructions are exact and repeatable, whatever
the machine's load; a "null" step (two markers in a row) measures the marker itself and is
subtracted. Under ``--tool cprofile`` the marker snapshots cProfile's call counts (Python calls
per step). Under ``--tool time`` it reads ``perf_counter_ns`` (noisy on a busy machine: medians).
``--tool callgrind-top`` runs the session phase once more with collection switched on only
inside the measured messages (``--toggle-collect=starmap_next``) and prints the C functions with
the most self cost (CPython's internals and the Cython twins; Python functions all run inside
``_PyEval_EvalFrameDefault``). ``--tool strace`` counts the system calls of a real
``bench/servers/smtpx_sink.py`` receiving smtp-source batches (two batch sizes, the difference
divided by the difference in messages, so that start-up and connection set-up cancel out)::

    python bench/budget.py                                  # every tool, both builds
    python bench/budget.py --tool callgrind --impl pure --messages 100
    python bench/budget.py --tool strace --strace-messages 2000
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

MAIL = b"MAIL FROM:<a@example.org>\r\n"
RCPT = b"RCPT TO:<b@example.org>\r\n"
DATA = b"DATA\r\n"
# 1024 bytes: a short header block and 78-character lines, as a small real message has.
BODY = b"Subject: budget\r\nFrom: a@example.org\r\nTo: b@example.org\r\n\r\n"
BODY += (b"x" * 78 + b"\r\n") * ((1024 - len(BODY)) // 80)
BODY += b"y" * (1024 - len(BODY) - 2) + b"\r\n"
assert len(BODY) == 1024
DOT = b".\r\n"

# Step labels, in the order a message goes through them (the report keeps this order).
S_MAIL = "MAIL"
S_RCPT = "RCPT"
S_DATA = "DATA command (354)"
S_BODY = "DATA reader, 1 KiB body (one read)"
S_DOT = "dot: end of data, Message, envelope, up to the handler"
S_HANDLER = "handler body, then the 250: queue, flush, touch, resume"
S_PARTIAL = "a read with no complete line (per-read overhead)"
L_MAIL = "loop: MAIL round (epoll + recv_into + session + send)"
L_RCPT = "loop: RCPT round"
L_DATA = "loop: DATA round"
L_BODY = "loop: body + dot + handler + 250 round (one read)"
L_WRITE = "transport.write of one reply (send())"
NULL = "the marker itself (subtracted from every row above)"
SESSION_STEPS = [S_MAIL, S_RCPT, S_DATA, S_BODY, S_DOT, S_HANDLER]
LOOP_STEPS = [L_MAIL, L_RCPT, L_DATA, L_BODY]
EXTRA_STEPS = [S_PARTIAL, L_WRITE, NULL]


# ------------------------------------------------------------------ child: the driver


class FakeTransport:
    """Just enough of asyncio.Transport for a Session; write() keeps the bytes."""

    def __init__(self) -> None:
        self.out: list[bytes] = []

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("192.0.2.1", 4000), "sockname": ("127.0.0.1", 25)}.get(name, default)

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def close(self) -> None: ...
    def get_write_buffer_size(self) -> int:
        return 0


class Marker:
    """Ends the current step: records its label, then calls the marker C function."""

    def __init__(self, tool: str) -> None:
        self.tool = tool
        self.labels: list[str] = []
        self.times: list[int] = []
        self.calls: list[int] = []
        self.handler_marks = True
        self.profiler: Any = None
        if tool == "cprofile":
            import cProfile  # noqa: PLC0415

            # The thread's CPU clock: another process's load does not count as own time.
            self.profiler = cProfile.Profile(time.thread_time)
            self.profiler.enable()

    def __call__(self, label: str) -> None:
        if self.profiler is not None:
            self.profiler.disable()
            self.calls.append(sum(entry.callcount for entry in self.profiler.getstats()))
        self.labels.append(label)
        os.getppid()  # valgrind --dump-before=os_getppid dumps here
        if self.tool == "time":
            self.times.append(time.perf_counter_ns())
        if self.profiler is not None:
            self.profiler.enable()


def feed(session: Any, data: bytes) -> None:
    """What asyncio's selector transport does with a read: recv_into the protocol's buffer."""
    n = len(data)
    session.get_buffer(n)[:n] = data
    session.buffer_updated(n)


def make_server(mark: Marker) -> Any:
    import asyncio  # noqa: PLC0415

    import smtpx  # noqa: PLC0415

    async def handler(envelope: Any) -> None:
        if mark.handler_marks:
            mark(S_DOT)
        mark.size = len(envelope.data)  # type: ignore[attr-defined]  # what the bench sink does

    # The sink's settings (bench/servers/smtpx_sink.py) with the default timeout, so the
    # idle-timeout bookkeeping is in the budget; the loop is only read for loop.time().
    server = smtpx.Server(
        hostname="bench",
        handler=handler,
        max_size=64 << 20,
        max_clients=10_000,
        max_clients_per_ip=10**6,
    )
    server._loop = asyncio.new_event_loop()
    return server


def session_phase(mark: Marker, messages: int, warm: int, partial: int) -> None:
    import itertools  # noqa: PLC0415

    server = make_server(mark)
    session = server._new_session()
    transport = FakeTransport()
    session.connection_made(transport)
    feed(session, b"EHLO client.example\r\n")
    mark("driver")

    def one(i: int) -> None:
        feed(session, MAIL)
        mark(S_MAIL)
        feed(session, RCPT)
        mark(S_RCPT)
        feed(session, DATA)
        mark(S_DATA)
        feed(session, BODY)
        mark(S_BODY)
        feed(session, DOT)
        mark(S_HANDLER)
        mark(NULL)
        assert transport.out[-1].startswith(b"250 "), transport.out[-4:]
        transport.out.clear()
        mark("driver")

    for i in range(warm):
        one(i)
    mark("warm-up")
    # starmap_next is the C function callgrind-top toggles collection on.
    list(itertools.starmap(one, ((i,) for i in range(messages))))
    for _ in range(partial):
        feed(session, b"NO")
        mark(S_PARTIAL)
        feed(session, b"OP\r\n")
        mark("driver")
    session.connection_lost(None)


def loop_phase(mark: Marker, messages: int, warm: int, writes: int) -> None:
    server = make_server(mark)
    mark.handler_marks = False
    loop = server._loop
    server_sock, client = socket.socketpair()
    client.settimeout(5.0)
    transport, _session = loop.run_until_complete(
        loop.connect_accepted_socket(server._new_session, server_sock)
    )
    run_once = loop._run_once

    def recv_reply(code: bytes) -> None:
        reply = client.recv(65536)
        assert reply.startswith(code), reply

    recv_reply(b"220")
    client.sendall(b"EHLO client.example\r\n")
    run_once()
    recv_reply(b"250")
    mark("driver")
    for i in range(warm + messages):
        for data, label, code in (
            (MAIL, L_MAIL, b"250"),
            (RCPT, L_RCPT, b"250"),
            (DATA, L_DATA, b"354"),
            (BODY + DOT, L_BODY, b"250"),
        ):
            client.sendall(data)
            mark("client")
            run_once()
            mark(label if i >= warm else "warm-up")
            recv_reply(code)
            mark("client")
    reply = b"250 2.0.0 Ok\r\n"
    for _ in range(writes):
        transport.write(reply)
        mark(L_WRITE)
        client.recv(65536)
        mark("client")
    transport.close()
    run_once()
    client.close()
    loop.close()


MICRO = ("empty", "envelope_id", "envelope", "touch", "state_x10", "class_attr_x10")


def micro_phase(what: str, messages: int) -> None:
    """One suspect alone, ``messages`` times, inside starmap (callgrind toggles on it)."""
    import itertools  # noqa: PLC0415

    from smtpx.envelope import Envelope, new_envelope_id  # noqa: PLC0415
    from smtpx.protocol._state import State  # noqa: PLC0415

    class Plain:
        DATA = 1

    session = make_server(Marker("none"))._new_session()
    session.connection_made(FakeTransport())

    def empty(i: int) -> None:
        pass

    def envelope_id(i: int) -> None:
        new_envelope_id()

    def envelope(i: int) -> None:
        Envelope(
            remote_addr=("192.0.2.1", 4000),
            local_addr=("127.0.0.1", 25),
            hostname="bench",
            helo="client.example",
            esmtp=True,
            tls=None,
            mail_from=None,
            rcpt_to=[],
            data=BODY,
            utf8=False,
            body_type=None,
            connection_id=1,
            lmtp=False,
            chunked=False,
            dsn_ret=None,
            dsn_envid=None,
            rcpt_dsn=[],
            requiretls=False,
        )

    def touch(i: int) -> None:
        session._touch()

    # Ten lookups into one tuple each: the difference of the two is ten times what an enum
    # member lookup costs above a plain class attribute.
    def state_x10(i: int) -> None:
        d = State
        _ = (d.DATA, d.DATA, d.DATA, d.DATA, d.DATA, d.DATA, d.DATA, d.DATA, d.DATA, d.DATA)

    def class_attr_x10(i: int) -> None:
        d = Plain
        _ = (d.DATA, d.DATA, d.DATA, d.DATA, d.DATA, d.DATA, d.DATA, d.DATA, d.DATA, d.DATA)

    fn = locals()[what]
    for i in range(50):
        fn(i)
    list(itertools.starmap(fn, ((i,) for i in range(messages))))


def run_micro(impl: str, args: argparse.Namespace, tmp: Path) -> list[str]:
    rows = ["| suspect | Ir per call (empty call subtracted) |", "|---|---|"]
    totals = {}
    for what in MICRO:
        prefix = tmp / f"micro-{what}.out"
        cmd = [
            "valgrind",
            "--tool=callgrind",
            "--collect-atstart=no",
            "--toggle-collect=starmap_next",
            f"--callgrind-out-file={prefix}",
            *child_cmd("micro", what, str(tmp / "micro.json"), args, messages=1000),
        ]
        subprocess.run(cmd, env=env_for(impl), check=True, stderr=subprocess.DEVNULL, timeout=300)
        text = prefix.read_text(encoding="utf-8", errors="replace")
        found = re.search(r"^(?:totals|summary): (\d+)", text, re.M)
        assert found, prefix
        totals[what] = int(found.group(1)) / 1000
        if what != "empty":
            rows.append(f"| `{what}` | {totals[what] - totals['empty']:,.0f} |")
    return [f"callgrind, one suspect alone, {impl}, 1000 calls:", "", *rows]


def child(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT))
    import smtpx  # noqa: PLC0415

    if args.tool == "micro":
        micro_phase(args.phase, args.messages)
        return

    mark = Marker(args.tool)
    mark("start-up")
    if args.phase in ("session", "all"):
        session_phase(mark, args.messages, args.warm, args.partial)
    if args.phase in ("loop", "all"):
        loop_phase(mark, args.messages, args.warm, args.partial)
    mark("end")
    out: dict[str, Any] = {
        "impl": smtpx.IMPLEMENTATION,
        "labels": mark.labels,
        "times": mark.times,
        "calls": mark.calls,
    }
    if mark.profiler is not None:
        import pstats  # noqa: PLC0415

        mark.profiler.disable()
        stats = pstats.Stats(mark.profiler)
        rows = []
        for (path, line, name), (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
            if path == __file__ or name in (
                "getppid",
                "<method 'disable' of '_lsprof.Profiler' objects>",
            ):
                continue  # the driver and the marker
            where = path.replace(str(ROOT) + "/", "").replace(sys.prefix, "")
            rows.append((tt, nc, ct, f"{name} ({Path(where).name}:{line})"))
        rows.sort(reverse=True)
        total = sum(row[0] for row in rows)
        out["top"] = [(tt / total * 100, nc, ct, name) for tt, nc, ct, name in rows[:40]]
    Path(args.out).write_text(json.dumps(out), encoding="utf-8")


# ------------------------------------------------------------------ parent: run and report


def child_cmd(
    tool: str,
    phase: str,
    out: str,
    args: argparse.Namespace,
    partial: int | None = None,
    messages: int | None = None,
) -> list[str]:
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "--tool",
        tool,
        "--phase",
        phase,
        "--out",
        out,
        "--messages",
        str(args.messages if messages is None else messages),
        "--warm",
        str(args.warm),
        "--partial",
        str(args.partial if partial is None else partial),
    ]


def env_for(impl: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SMTPX_NO_EXTENSIONS", None)
    if impl == "pure":
        env["SMTPX_NO_EXTENSIONS"] = "1"
    else:
        env["SMTPX_REQUIRE_EXTENSIONS"] = "1"
    env["PYTHONHASHSEED"] = "0"  # the same dict layouts, so the same instruction counts
    return env


def per_step(labels: list[str], values: list[float]) -> dict[str, list[float]]:
    """values[k] is the cost of the interval that labels[k] ended."""
    steps: dict[str, list[float]] = defaultdict(list)
    for label, value in zip(labels, values, strict=True):
        steps[label].append(value)
    return steps


def run_callgrind(impl: str, args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    out = tmp / f"cg-{impl}.json"
    prefix = tmp / f"cg-{impl}.out"
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--dump-before=os_getppid",
        f"--callgrind-out-file={prefix}",
        "--dump-line=no",
        "--compress-pos=yes",
        *child_cmd("callgrind", "all", str(out), args),
    ]
    subprocess.run(cmd, env=env_for(impl), check=True, stderr=subprocess.DEVNULL, timeout=900)
    labels = json.loads(out.read_text(encoding="utf-8"))["labels"]
    totals = []
    for k in range(1, len(labels) + 1):
        part = Path(f"{prefix}.{k}")
        text = part.read_text(encoding="utf-8", errors="replace")
        found = re.search(r"^(?:totals|summary): (\d+)", text, re.M)
        assert found, part
        totals.append(float(found.group(1)))
        part.unlink()
    steps = per_step(labels, totals)
    null = statistics.median(steps[NULL])
    # Every interval but the null one holds one marker call too; the null one is that alone.
    return {label: statistics.median(v) - (label != NULL) * null for label, v in steps.items()}


def run_callgrind_top(impl: str, args: argparse.Namespace, tmp: Path, top: int) -> list[str]:
    out = tmp / f"cgtop-{impl}.json"
    prefix = tmp / f"cgtop-{impl}.out"
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--collect-atstart=no",
        "--toggle-collect=starmap_next",
        "--separate-recs=1",
        f"--callgrind-out-file={prefix}",
        *child_cmd("callgrind", "session", str(out), args, partial=0),
    ]
    subprocess.run(cmd, env=env_for(impl), check=True, stderr=subprocess.DEVNULL, timeout=900)
    text = subprocess.run(
        ["callgrind_annotate", "--inclusive=no", "--threshold=100", str(prefix)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = []
    total = None
    for line in text.splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*([\d.]+)%\)\s+(?:PROGRAM TOTALS|(\S.*))$", line)
        if m is None:
            m2 = re.match(r"\s*([\d,]+) \(100.0%\)\s+PROGRAM TOTALS", line)
            if m2:
                total = int(m2.group(1).replace(",", ""))
            continue
        if m.group(3) is None:
            total = int(m.group(1).replace(",", ""))
            continue
        ir = int(m.group(1).replace(",", ""))
        name = re.sub(r"\s*\[.*\]$", "", m.group(3)).split(":", 1)[-1]
        rows.append(f"| {ir / args.messages:,.0f} | {m.group(2)} | `{name}` |")
    if total is None:
        total = int(
            re.search(r"([\d,]+)\s+\(100.0%\)\s+PROGRAM TOTALS", text).group(1).replace(",", "")
        )  # type: ignore[union-attr]
    head = [
        f"{impl}: {total / args.messages:,.0f} instructions per message inside the measured loop",
        "",
        "| Ir/msg (self) | % | function |",
        "|---|---|---|",
    ]
    return head + rows[:top]


def run_child(tool: str, impl: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    out = tmp / f"{tool}-{impl}.json"
    subprocess.run(
        child_cmd(tool, "all", str(out), args), env=env_for(impl), check=True, timeout=300
    )
    return json.loads(out.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def run_time(impl: str, args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    best: dict[str, float] = {}
    for _ in range(args.time_runs):
        data = run_child("time", impl, args, tmp)
        times = data["times"]
        deltas = [(b - a) / 1000 for a, b in zip([times[0], *times], times, strict=False)]
        steps = per_step(data["labels"], deltas)
        null = statistics.median(steps[NULL])
        for label, v in steps.items():
            value = statistics.median(v) - (label != NULL) * null
            best[label] = min(best.get(label, value), value)
    return best


def run_cprofile(impl: str, args: argparse.Namespace, tmp: Path) -> tuple[dict[str, float], list]:  # type: ignore[type-arg]
    data = run_child("cprofile", impl, args, tmp)
    # The own-time ranking from a session-only run: no client, loop or NOOP calls in it.
    out = tmp / f"cprofile-top-{impl}.json"
    subprocess.run(
        child_cmd("cprofile", "session", str(out), args, partial=0, messages=args.profile_messages),
        env=env_for(impl),
        check=True,
        timeout=300,
    )
    data["top"] = json.loads(out.read_text(encoding="utf-8"))["top"]
    calls = data["calls"]
    deltas = [b - a for a, b in zip([calls[0], *calls], calls, strict=False)]
    steps = per_step(data["labels"], deltas)
    null = statistics.median(steps[NULL])
    top = data["top"]
    return {k: statistics.median(v) - (k != NULL) * null for k, v in steps.items()}, top


def wait_port(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"sink did not listen on {port}")


def strace_batch(messages: int, tmp: Path, impl: str) -> dict[str, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    summary = tmp / f"strace-{messages}.txt"
    stats = tmp / "stats.json"
    env = env_for(impl)
    env["PYTHONPATH"] = str(ROOT)
    sink = subprocess.Popen(
        [
            "strace",
            "-f",
            "-c",
            "-o",
            str(summary),
            sys.executable,
            str(HERE / "servers" / "smtpx_sink.py"),
            "--port",
            str(port),
            "--stats",
            str(stats),
        ],
        env=env,
        cwd=HERE / "servers",
    )
    try:
        wait_port(port, time.monotonic() + 30)
        subprocess.run(
            [
                "smtp-source",
                "-d",
                "-s",
                "20",
                "-m",
                str(messages),
                "-l",
                "1024",
                f"127.0.0.1:{port}",
            ],
            check=True,
            timeout=120,
        )
    finally:
        # Signal the traced sink, not strace: strace writes its summary when the tracee exits.
        children = Path(f"/proc/{sink.pid}/task/{sink.pid}/children")
        pids = children.read_text(encoding="ascii").split() if children.exists() else []
        for pid in pids or [str(sink.pid)]:
            os.kill(int(pid), signal.SIGTERM)
        try:
            sink.wait(timeout=20)
        except subprocess.TimeoutExpired:
            sink.kill()
            sink.wait()
    counts: dict[str, int] = {}
    for line in summary.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
            # % time, seconds, usecs/call, calls, [errors], syscall
            counts[parts[-1]] = int(parts[3])
    return counts


def report_strace(args: argparse.Namespace, tmp: Path) -> list[str]:
    small, big = args.strace_messages // 10, args.strace_messages + args.strace_messages // 10
    a = strace_batch(small, tmp, "compiled")
    b = strace_batch(big, tmp, "compiled")
    n = big - small
    rows = [
        f"strace -f -c, smtpx sink (compiled), smtp-source -d -s 20 -l 1024: "
        f"({big} msgs) - ({small} msgs), per message:",
        "",
        "| syscall | per message |",
        "|---|---|",
    ]
    per = {k: (b.get(k, 0) - a.get(k, 0)) / n for k in set(a) | set(b)}
    for k, v in sorted(per.items(), key=lambda kv: -kv[1]):
        if abs(v) >= 0.005:
            rows.append(f"| {k} | {v:.2f} |")
    rows.append(f"| **all** | {sum(per.values()):.2f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--phase", default="all", help=argparse.SUPPRESS)
    parser.add_argument(
        "--tool",
        default="all",
        choices=("all", "callgrind", "callgrind-top", "cprofile", "time", "strace", "micro"),
    )
    parser.add_argument("--impl", default="both", choices=("both", "compiled", "pure"))
    parser.add_argument("--messages", type=int, default=50, help="measured messages per phase")
    parser.add_argument("--warm", type=int, default=20, help="warm-up messages per phase")
    parser.add_argument("--partial", type=int, default=50, help="partial reads and bare writes")
    parser.add_argument("--time-runs", type=int, default=5, help="--tool time: best of")
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument(
        "--profile-messages", type=int, default=3000, help="cProfile own-time ranking: messages"
    )
    parser.add_argument("--strace-messages", type=int, default=2000)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.tool in ("all", "callgrind", "callgrind-top") and shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed")
    impls = ["compiled", "pure"] if args.impl == "both" else [args.impl]
    tools = (
        ["callgrind", "cprofile", "time", "callgrind-top", "micro", "strace"]
        if args.tool == "all"
        else [args.tool]
    )
    results: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    extra: list[str] = []
    with tempfile.TemporaryDirectory(prefix="smtpx-budget-") as tmpdir:
        tmp = Path(tmpdir)
        for tool in tools:
            if tool == "strace":
                extra += ["", *report_strace(args, tmp)]
                continue
            if tool == "micro":
                extra += ["", *run_micro("compiled", args, tmp)]
                continue
            for impl in impls:
                if tool == "callgrind":
                    results[tool][impl] = run_callgrind(impl, args, tmp)
                elif tool == "time":
                    results[tool][impl] = run_time(impl, args, tmp)
                elif tool == "cprofile":
                    calls, top = run_cprofile(impl, args, tmp)
                    results[tool][impl] = calls
                    extra += ["", f"cProfile, {impl}: top {args.top} Python functions by own time"]
                    extra += [
                        "",
                        "| own % (cProfile, CPU clock) | calls/msg | function |",
                        "|---|---|---|",
                    ]
                    total_msgs = args.profile_messages + args.warm
                    for tt, nc, _ct, name in top[: args.top]:
                        extra.append(f"| {tt:.1f} | {nc / total_msgs:.2f} | `{name}` |")
                elif tool == "callgrind-top":
                    extra += ["", *run_callgrind_top(impl, args, tmp, args.top)]
    print_table(results, impls, args)
    print("\n".join(extra))


def print_table(
    results: dict[str, dict[str, dict[str, float]]], impls: list[str], args: argparse.Namespace
) -> None:
    cols = []
    for tool, unit in (("callgrind", "Ir"), ("cprofile", "calls"), ("time", "µs (noisy)")):
        for impl in impls:
            if impl in results.get(tool, {}):
                cols.append((tool, impl, unit))
    if not cols:
        return
    print(f"per message, median of {args.messages} messages after {args.warm} warm-up ones\n")
    print("| step | " + " | ".join(f"{impl} {unit}" for _t, impl, unit in cols) + " |")
    print("|---|" + "---|" * len(cols))

    def row(label: str, values: list[float]) -> None:
        cells = [
            f"{v:,.0f}" if unit != "µs (noisy)" else f"{v:.2f}"
            for v, (_t, _i, unit) in zip(values, cols, strict=True)
        ]
        print(f"| {label} | " + " | ".join(cells) + " |")

    for group in (SESSION_STEPS, LOOP_STEPS):
        for label in group:
            row(label, [results[t][i].get(label, float("nan")) for t, i, _u in cols])
        row(
            "**sum**",
            [sum(results[t][i].get(label, float("nan")) for label in group) for t, i, _u in cols],
        )
    for label in EXTRA_STEPS:
        row(label, [results[t][i].get(label, float("nan")) for t, i, _u in cols])


if __name__ == "__main__":
    main()
