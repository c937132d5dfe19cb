"""Load benchmark: smtpx against other SMTP server libraries, driven by Postfix's smtp-source.

Every (repetition, cell, server) run starts a fresh sink server on a free loopback port, waits
until it greets, drives it with ``smtp-source`` and stops it again, so CPU time and peak RSS
belong to that cell alone. Servers alternate within each repetition (the order rotates from one
repetition to the next), and the tables show the median of the repetitions.

Measured per cell: messages/s, MB/s (10^6 bytes of message payload per second), server CPU time
(utime + stime from /proc/<pid>/stat, all threads), peak RSS (VmHWM from /proc/<pid>/status).
The "idle" cell opens 1000 connections that read the greeting and then idle, and reports the RSS
growth per connection. Every load cell checks that the sink counted exactly the messages
smtp-source sent; a mismatch is reported as LOST and makes the exit status 1.

Usage::

    python bench/load.py --servers smtpx,smtpx-pure,aiosmtpd,node --reps 3 --cells quick
    python bench/load.py --cells full --loop both --json /tmp/load.json

See bench/README.md for how to install smtp-source and the Node peer.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

BENCH = Path(__file__).resolve().parent
SERVERS_DIR = BENCH / "servers"
REPO = BENCH.parent
KIB = 1024
MIB = 1024 * KIB
CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"
IDLE_CONNECTIONS = 1000
# smtp-source's identity: fixed names, so it never looks up the machine's hostname.
CLIENT_ARGS = ("-M", "bench.example", "-f", "sender@bench.example", "-t", "rcpt@bench.example")


# --------------------------------------------------------------------------- cells


@dataclass(frozen=True)
class Cell:
    """One benchmark cell: `conc` parallel sessions sending messages of `size` bytes.

    A load run first sends `warm` messages (untimed), then a timed batch sized from the warm-up's
    rate to last about --seconds, between `conc` messages (every session sends one) and
    `max_count`. kind "idle" opens `conc` connections that only read the greeting.
    """

    kind: str  # "load" or "idle"
    conc: int
    size: int = 0
    warm: int = 0
    max_count: int = 0
    min_count: int = 0  # default: conc, one message per session

    @property
    def label(self) -> str:
        if self.kind == "idle":
            return f"idle {self.conc} conns"
        return f"c{self.conc} {size_label(self.size)}"

    @property
    def big(self) -> bool:
        # Cells reported in MB/s rather than msgs/s (as in issue 6's table).
        return self.size >= MIB

    def timed_count(self, rate: float, seconds: float) -> int:
        return max(self.min_count or self.conc, min(self.max_count, round(rate * seconds)))


def size_label(size: int) -> str:
    if size >= MIB and size % MIB == 0:
        return f"{size // MIB} MiB"
    if size >= KIB and size % KIB == 0:
        return f"{size // KIB} KiB"
    return f"{size} B"


# max_count bounds the fastest server (smtp-sink does ~25k msgs/s of 1 KiB here); the minimum of
# one message per session bounds the slowest (aiosmtpd: ~8 msgs/s of 5 MiB, so c200 x 5 MiB
# takes it ~25 s per repetition).
QUICK = (
    Cell("load", 20, 1 * KIB, 1500, 40_000),
    Cell("load", 200, 1 * KIB, 1500, 40_000),
    Cell("load", 20, 100 * KIB, 200, 6_000),
    Cell("load", 20, 5 * MIB, 10, 200),
    Cell("idle", IDLE_CONNECTIONS),
)
FULL = (
    Cell("load", 1, 1 * KIB, 500, 40_000),
    Cell("load", 20, 1 * KIB, 1500, 80_000),
    Cell("load", 200, 1 * KIB, 1500, 80_000),
    Cell("load", 1, 100 * KIB, 100, 8_000),
    Cell("load", 20, 100 * KIB, 200, 8_000),
    Cell("load", 200, 100 * KIB, 400, 8_000),
    Cell("load", 1, 5 * MIB, 2, 200),
    Cell("load", 20, 5 * MIB, 10, 300, 40),
    Cell("load", 200, 5 * MIB, 20, 400),
    Cell("idle", IDLE_CONNECTIONS),
)
GRIDS = {"quick": QUICK, "full": FULL}
# (timed batch, warm-up) seconds: quick stays near 3 minutes for six servers on 2 cores.
DEFAULT_SECONDS = {"quick": (0.8, 0.6), "full": (2.0, 1.0)}


def client_split(conc: int, size: int, count: int) -> list[tuple[int, int]]:
    """(sessions, messages) for each smtp-source process sending `count` messages.

    smtp-source does not pipeline and writes a message body with one blocking write, so one
    process serialises the bodies of all its sessions; large messages are spread over several
    processes to get real concurrency (issue 6). Small messages use one process.
    """
    if size >= MIB:
        procs = min(conc, 20)
    elif size >= 64 * KIB:
        procs = min(conc, 4)
    else:
        procs = 1
    out: list[tuple[int, int]] = []
    for i in range(procs):
        sessions = conc // procs + (1 if i < conc % procs else 0)
        messages = count // procs + (1 if i < count % procs else 0)
        if messages:
            out.append((sessions, messages))
    return out


# --------------------------------------------------------------------------- servers


@dataclass(frozen=True)
class ServerSpec:
    """How to start one sink server and how it reports what it received."""

    name: str
    family: str  # "smtpx" or "peer"
    argv: Callable[[int, str], list[str]]  # (port, stats path) -> command
    env: dict[str, str] = field(default_factory=dict)
    counts_via: str = "stats"  # "stats" (SIGUSR2 -> JSON file) or "smtp-sink" (its -c output)
    # Processes the server runs as (a forking server: parent + workers). Above 1, the harness
    # signals each of them for its own stats file (PATH.<pid>) and sums CPU time and RSS over
    # the whole process tree.
    processes: int = 1
    probe: tuple[str, ...] = ()  # command that must exit 0 for the server to be available
    need: tuple[str, ...] = ()  # executables that must be on PATH


def _python_env(extra: dict[str, str], smtpx_path: str | None = None) -> dict[str, str]:
    env = dict(extra)
    paths = [smtpx_path] if smtpx_path else []
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def server_specs(
    smtpx_path: str, workers: int = 2, baseline_path: str | None = None
) -> dict[str, ServerSpec]:
    py = sys.executable
    sink = SERVERS_DIR

    def smtpx(
        name: str,
        pure: bool,
        loop: str,
        workers: int = 1,
        rcpt_hook: bool = False,
        path: str | None = None,
    ) -> ServerSpec:
        extra = {"SMTPX_NO_EXTENSIONS": "1"} if pure else {}
        env = _python_env(extra, path or smtpx_path)
        # A baseline checkout runs its own sink script, written for its own API.
        script = (
            Path(path) / "bench" / "servers" / "smtpx_sink.py" if path else sink / "smtpx_sink.py"
        )
        check = "import smtpx.server" + ("; import uvloop" if loop == "uvloop" else "")
        if workers > 1:
            check += "; import smtpx._runner"
        return ServerSpec(
            name=name,
            family="smtpx",
            argv=lambda port, stats: [
                py,
                str(script),
                "--port",
                str(port),
                "--stats",
                stats,
                "--loop",
                loop,
                "--workers",
                str(workers),
                *(["--rcpt-hook"] if rcpt_hook else []),
            ],
            env=env,
            probe=(py, "-c", check),
            # smtpx's forking runner: the parent stays (it waits for the workers).
            processes=workers + 1 if workers > 1 else 1,
        )

    def pysink(name: str, script: str, check: str) -> ServerSpec:
        return ServerSpec(
            name=name,
            family="peer",
            argv=lambda port, stats: [
                py,
                str(sink / script),
                "--port",
                str(port),
                "--stats",
                stats,
            ],
            env=_python_env({}),
            probe=(py, "-W", "ignore", "-c", check),
        )

    specs = [
        smtpx("smtpx", False, "asyncio"),
        smtpx("smtpx-pure", True, "asyncio"),
        smtpx("smtpx-uvloop", False, "uvloop"),
        smtpx("smtpx-pure-uvloop", True, "uvloop"),
        # Issue 12: the same sink with a trivial async rcpt session hook (compare with "smtpx").
        smtpx("smtpx-rcpthook", False, "asyncio", rcpt_hook=True),
        smtpx("smtpx-pure-rcpthook", True, "asyncio", rcpt_hook=True),
        # Issue 14: smtpx forwarding each transaction to a Postfix smtp-sink it starts itself;
        # its count is what smtp-sink received (compare msgs/s with "smtpx").
        ServerSpec(
            name="smtpx-forward",
            family="smtpx",
            argv=lambda port, stats: [
                py,
                str(sink / "smtpx_forward_sink.py"),
                "--port",
                str(port),
                "--stats",
                stats,
            ],
            env=_python_env({}, smtpx_path),
            probe=(py, "-c", "import smtpx.forward"),
            need=("smtp-sink",),
        ),
    ]
    # Issue 6 part 3: worker processes sharing one port (SO_REUSEPORT) through smtpx's forking
    # runner; "-workers2" always exists, --workers N adds "-workersN".
    for n in sorted({2, workers} - {1}):
        specs += [
            smtpx(f"smtpx-workers{n}", False, "asyncio", n),
            smtpx(f"smtpx-workers{n}-uvloop", False, "uvloop", n),
            smtpx(f"smtpx-pure-workers{n}", True, "asyncio", n),
            smtpx(f"smtpx-pure-workers{n}-uvloop", True, "uvloop", n),
        ]
    if baseline_path:
        # "No cell gets slower" (issue 11): an older checkout, built, in the same run.
        specs.append(smtpx("smtpx-base", False, "asyncio", path=baseline_path))
    specs += [
        pysink("aiosmtpd", "aiosmtpd_sink.py", "import aiosmtpd.smtp"),
        pysink("stdlib", "stdlib_smtpd_sink.py", "import smtpd, asyncore"),
        ServerSpec(
            name="node",
            family="peer",
            argv=lambda port, stats: [
                "node",
                str(sink / "node_sink.js"),
                "--port",
                str(port),
                "--stats",
                stats,
            ],
            probe=("node", "-e", f"require({json.dumps(str(sink / 'node_modules/smtp-server'))})"),
            need=("node",),
        ),
        ServerSpec(
            name="smtp-sink",
            family="peer",
            # -c: count sessions/messages on stdout; -u: it refuses to run as root otherwise;
            # -m: raise the default cap of 256 simultaneous connections for the idle cell.
            argv=lambda port, stats: [
                "smtp-sink",
                "-c",
                "-u",
                "nobody",
                "-m",
                str(IDLE_CONNECTIONS * 2),
                f"{HOST}:{port}",
                "1024",
            ],
            counts_via="smtp-sink",
            need=("smtp-sink",),
        ),
    ]
    return {s.name: s for s in specs}


def unavailable_reason(spec: ServerSpec) -> str | None:
    for exe in spec.need:
        if shutil.which(exe) is None:
            return f"{exe} not on PATH"
    if spec.probe:
        env = {**os.environ, **spec.env}
        try:
            r = subprocess.run(
                spec.probe, env=env, capture_output=True, timeout=30, check=False, text=True
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"probe failed: {exc}"
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or ["?"])[-1]
            return f"probe {' '.join(spec.probe[-1:])!r} failed: {last}"
    return None


# --------------------------------------------------------------------------- processes

_STARTED: list[subprocess.Popen[bytes]] = []


def _spawn(
    argv: Sequence[str], env: dict[str, str] | None = None, **kw: object
) -> subprocess.Popen[bytes]:
    proc: subprocess.Popen[bytes] = subprocess.Popen(  # type: ignore[call-overload]
        list(argv),
        env={**os.environ, **(env or {})},
        # Own session: a Ctrl-C in the terminal reaches only the harness, which then stops
        # its children one by one (by PID) in its finally blocks.
        start_new_session=True,
        **kw,
    )
    _STARTED.append(proc)
    return proc


def _stop(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """Stop one process this harness started: SIGTERM, then SIGKILL after `grace` seconds.

    A forking server passes SIGTERM on to its workers; any worker still alive once the parent
    is gone (it was killed, or it left them behind) is killed by PID.
    """
    descendants = process_tree(proc.pid)[1:] if proc.poll() is None else []
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace)
    for pid in descendants:
        deadline = time.monotonic() + grace
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if _pid_alive(pid):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    if proc in _STARTED:
        _STARTED.remove(proc)


def _pid_alive(pid: int) -> bool:
    # The workers are not our children (their parent reaps them, or init once it is gone), so
    # poll /proc; a zombie counts as gone.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def stop_all() -> None:
    for proc in list(_STARTED):
        with suppress(OSError, subprocess.TimeoutExpired):
            _stop(proc, grace=2.0)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants (from the PPid of every process in /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        parents.setdefault(ppid, []).append(int(entry))
    out = [root]
    for pid in out:  # grows while iterating: breadth-first
        out.extend(parents.get(pid, ()))
    return out


def proc_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state) of proc(5); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{key} missing from /proc/{pid}/status")


def machine_busy_seconds() -> float:
    """CPU time the whole machine spent busy (all CPUs; steal counts as busy), in seconds."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def children_cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class ServerFailed(RuntimeError):
    pass


@dataclass
class RunningServer:
    spec: ServerSpec
    proc: subprocess.Popen[bytes]
    port: int
    stats_path: Path
    stdout_path: Path
    stderr_path: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def pids(self) -> list[int]:
        if self.spec.processes == 1:
            return [self.proc.pid]
        pids = process_tree(self.proc.pid)
        if len(pids) != self.spec.processes:
            raise ServerFailed(f"expected {self.spec.processes} processes, found {pids}")
        return pids

    def cpu_seconds(self) -> float:
        """CPU time of the server so far: every process of its tree."""
        return sum(proc_cpu_seconds(p) for p in self.pids())

    def status_kib(self, key: str) -> int:
        """A /proc/<pid>/status size (VmRSS, VmHWM), summed over the tree. For a forking
        server this counts pages the workers still share with the parent once per process,
        so it overstates the memory used (by about the parent's RSS per worker)."""
        return sum(proc_status_kib(p, key) for p in self.pids())

    def stderr_tail(self) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace").strip()
        except OSError:
            return ""
        return " | ".join(text.splitlines()[-3:])


@contextmanager
def running_server(spec: ServerSpec, workdir: Path) -> Iterator[RunningServer]:
    port = free_port()
    stats_path = workdir / f"{spec.name}-{port}.json"
    stdout_path = workdir / f"{spec.name}-{port}.out"
    stderr_path = workdir / f"{spec.name}-{port}.err"
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        proc = _spawn(
            spec.argv(port, str(stats_path)), env=spec.env, stdout=out, stderr=err, cwd=workdir
        )
    server = RunningServer(spec, proc, port, stats_path, stdout_path, stderr_path)
    try:
        wait_ready(server, timeout=20.0)
        yield server
    finally:
        _stop(proc)


def _read_line(sock: socket.socket, deadline: float) -> bytes:
    buf = b""
    while b"\n" not in buf:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before a full line")
        buf += chunk
    return buf


def wait_ready(server: RunningServer, timeout: float) -> None:
    """Poll until the server greets with 220; the probe session then QUITs (and warms it up)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    strikes = 0
    while time.monotonic() < deadline:
        if not server.alive():
            raise ServerFailed(f"exited with {server.proc.returncode}: {server.stderr_tail()}")
        try:
            with socket.create_connection((HOST, server.port), timeout=1.0) as s:
                greeting = _read_line(s, time.monotonic() + 5.0)
                if not greeting.startswith(b"220"):
                    raise ServerFailed(f"unexpected greeting {greeting[:80]!r}")
                s.sendall(b"QUIT\r\n")
                _read_line(s, time.monotonic() + 5.0)
            # A forking server may greet from its first worker before the last one exists.
            while len(process_tree(server.proc.pid)) < server.spec.processes:
                if time.monotonic() > deadline or not server.alive():
                    raise ServerFailed(
                        f"only {process_tree(server.proc.pid)} of {server.spec.processes}"
                        f" processes: {server.stderr_tail()}"
                    )
                time.sleep(0.02)
            return
        except ConnectionRefusedError as exc:
            last = exc  # not listening yet
            time.sleep(0.025)
        except OSError as exc:
            # Listening but not speaking SMTP properly: a few tries, not the whole timeout.
            last = exc
            strikes += 1
            if strikes >= 3:
                raise ServerFailed(f"greeting failed ({exc}): {server.stderr_tail()}") from None
            time.sleep(0.1)
    raise ServerFailed(f"not ready after {timeout:.0f}s ({last}): {server.stderr_tail()}")


def received_counts(server: RunningServer) -> tuple[int, int | None, str]:
    """(messages, bytes or None, implementation label) as counted by the sink itself."""
    if server.spec.counts_via == "smtp-sink":
        # smtp-sink -c rewrites "sess=N quit=N mesg=N" after every event; stop it so the
        # last counter line is flushed, then read it.
        _stop(server.proc)
        text = server.stdout_path.read_text(errors="replace")
        found = re.findall(r"mesg=(\d+)", text)
        return (int(found[-1]) if found else 0), None, "postfix smtp-sink"
    if server.spec.processes > 1:
        # Every process counts its own messages into PATH.<pid> (the parent writes zeros).
        pids = server.pids()
        paths = [Path(f"{server.stats_path}.{pid}") for pid in pids]
        for path in paths:
            path.unlink(missing_ok=True)
        for pid in pids:
            os.kill(pid, signal.SIGUSR2)
    else:
        paths = [server.stats_path]
        paths[0].unlink(missing_ok=True)
        server.proc.send_signal(signal.SIGUSR2)
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        if all(path.exists() for path in paths):
            stats = [json.loads(path.read_text()) for path in paths]
            return (
                sum(int(d["messages"]) for d in stats),
                sum(int(d["bytes"]) for d in stats),
                str(stats[0].get("impl", "?")),
            )
        if not server.alive():
            break
        time.sleep(0.01)
    missing = [p.name for p in paths if not p.exists()]
    raise ServerFailed(f"no stats after SIGUSR2 ({missing}): {server.stderr_tail()}")


# --------------------------------------------------------------------------- runs


@dataclass
class Run:
    """One (server, cell, repetition) measurement."""

    server: str
    cell: str
    rep: int
    ok: bool = False
    error: str = ""
    impl: str = ""
    sent: int = 0
    received: int = 0
    received_bytes: int | None = None
    wall_s: float = 0.0
    msgs_per_s: float = 0.0
    mb_per_s: float = 0.0
    cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    other_cpu_pct: float = 0.0
    peak_rss_kib: int = 0
    idle_kib_per_conn: float = 0.0


def drive(server: RunningServer, conc: int, size: int, count: int, timeout: float) -> float:
    """Send `count` messages with smtp-source; the wall time in seconds."""
    split = client_split(conc, size, count)
    clients: list[subprocess.Popen[bytes]] = []
    errs: list[IO[bytes]] = []
    with ExitStack() as stack:
        try:
            t0 = time.perf_counter()
            for sessions, messages in split:
                err = stack.enter_context(tempfile.TemporaryFile(prefix="smtp-source-"))
                errs.append(err)
                argv = ["smtp-source", "-d", "-s", str(sessions), "-m", str(messages)]
                argv += ["-l", str(size), *CLIENT_ARGS, f"{HOST}:{server.port}"]
                clients.append(_spawn(argv, stdout=subprocess.DEVNULL, stderr=err))
            deadline = time.monotonic() + timeout
            for c in clients:
                try:
                    c.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    raise ServerFailed(f"smtp-source still running after {timeout:.0f}s") from None
            wall = time.perf_counter() - t0
            failed = [c for c in clients if c.returncode != 0]
            if failed:
                failed_err = errs[clients.index(failed[0])]
                failed_err.seek(0)
                msg = failed_err.read().decode(errors="replace").strip().splitlines()[-1:] or ["?"]
                raise ServerFailed(f"smtp-source exited {failed[0].returncode}: {msg[0]}")
        finally:
            for c in clients:
                _stop(c, grace=1.0)
    return wall


def run_load(
    server: RunningServer, cell: Cell, run: Run, timeout: float, seconds: float, warm_seconds: float
) -> None:
    # Untimed warm-up on the same cell for about warm_seconds: Node's JIT tiers need about a
    # second to settle, CPython's specialising interpreter much less. The last warm-up batch's
    # rate sizes the timed batch.
    warm_sent = 0
    warm_time = 0.0
    batch = cell.warm
    rate = 0.0
    for _ in range(8):
        wall = drive(server, cell.conc, cell.size, batch, timeout)
        warm_sent += batch
        warm_time += wall
        rate = batch / wall
        if warm_time >= warm_seconds:
            break
        more = round(rate * min(0.5, warm_seconds - warm_time))
        batch = max(cell.warm, min(cell.max_count, more))
    run.sent = cell.timed_count(rate, seconds)
    cpu0 = server.cpu_seconds()
    client0 = children_cpu_seconds()
    busy0 = machine_busy_seconds()
    wall = drive(server, cell.conc, cell.size, run.sent, timeout)
    busy = machine_busy_seconds() - busy0
    # drive() reaps its smtp-source processes, so RUSAGE_CHILDREN grows by exactly their CPU.
    run.client_cpu_s = children_cpu_seconds() - client0
    if not server.alive():
        raise ServerFailed(f"server died: {server.stderr_tail()}")
    run.cpu_s = server.cpu_seconds() - cpu0
    # Whatever else ran meanwhile (other users of a shared machine, the harness itself): a
    # high value means the cell was measured on a busy machine.
    run.other_cpu_pct = 100 * max(0.0, busy - run.cpu_s - run.client_cpu_s) / wall
    run.peak_rss_kib = server.status_kib("VmHWM")
    received, received_bytes, run.impl = received_counts(server)
    run.received = received - warm_sent
    run.received_bytes = received_bytes
    run.wall_s = wall
    run.msgs_per_s = run.received / wall
    run.mb_per_s = run.received * cell.size / wall / 1e6
    if received != run.sent + warm_sent:
        run.error = f"LOST: sent {run.sent + warm_sent}, sink counted {received}"
        return
    run.ok = True


def run_idle(server: RunningServer, cell: Cell, run: Run, timeout: float) -> None:
    """Open cell.conc connections that read the greeting and idle; RSS growth per connection."""
    time.sleep(0.2)
    rss0 = server.status_kib("VmRSS")
    cpu0 = server.cpu_seconds()
    socks: list[socket.socket] = []
    sel = selectors.DefaultSelector()
    deadline = time.monotonic() + timeout
    t0 = time.perf_counter()
    try:
        greeted = 0
        pending: dict[socket.socket, bytes] = {}
        # Connect in batches of 50 and wait for their greetings before the next batch, so a
        # short listen backlog never drops a SYN (which would cost a 1 s retransmit).
        while greeted < cell.conc:
            if time.monotonic() > deadline:
                raise ServerFailed(f"only {greeted}/{cell.conc} idle connections greeted")
            for _ in range(min(50, cell.conc - len(socks))):
                s = socket.create_connection((HOST, server.port), timeout=5.0)
                s.setblocking(False)
                socks.append(s)
                pending[s] = b""
                sel.register(s, selectors.EVENT_READ)
            while pending and time.monotonic() < deadline:
                for key, _ in sel.select(timeout=0.5):
                    conn = key.fileobj
                    assert isinstance(conn, socket.socket)
                    chunk = conn.recv(4096)
                    if not chunk:
                        raise ServerFailed("server closed an idle connection")
                    buf = pending[conn] + chunk
                    if b"\n" in buf:
                        if not buf.startswith(b"220"):
                            raise ServerFailed(f"greeting {buf[:60]!r}")
                        del pending[conn]
                        sel.unregister(conn)
                        greeted += 1
                    else:
                        pending[conn] = buf
        run.wall_s = time.perf_counter() - t0
        # Let allocators and (for Node) lazy per-socket setup settle before measuring.
        time.sleep(0.5)
        if not server.alive():
            raise ServerFailed(f"server died: {server.stderr_tail()}")
        rss1 = server.status_kib("VmRSS")
        run.peak_rss_kib = server.status_kib("VmHWM")
        run.cpu_s = server.cpu_seconds() - cpu0
        run.idle_kib_per_conn = (rss1 - rss0) / cell.conc
        run.ok = True
    finally:
        sel.close()
        for s in socks:
            s.close()


def run_one(
    spec: ServerSpec,
    cell: Cell,
    rep: int,
    workdir: Path,
    timeout: float,
    seconds: float,
    warm_seconds: float,
    impls: dict[str, str],
) -> Run:
    run = Run(server=spec.name, cell=cell.label, rep=rep)
    try:
        with running_server(spec, workdir) as server:
            if cell.kind == "idle":
                run_idle(server, cell, run, timeout)
                run.impl = impls.get(spec.name, "")
            else:
                run_load(server, cell, run, timeout, seconds, warm_seconds)
                impls[spec.name] = run.impl
    except (ServerFailed, OSError) as exc:
        run.error = f"{type(exc).__name__}: {exc}" if isinstance(exc, OSError) else str(exc)
    return run


def wait_idle(limit: float, max_other_cores: float = 0.15) -> None:
    """Wait (at most `limit` seconds) until the rest of the machine is nearly idle.

    Other jobs on a shared machine steal CPU from server and client alike; starting a run in a
    quiet moment makes the repetitions comparable.
    """
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        b0, t0 = machine_busy_seconds(), time.monotonic()
        time.sleep(0.1)
        if machine_busy_seconds() - b0 <= max_other_cores * (time.monotonic() - t0):
            return


def measure(
    spec: ServerSpec,
    cell: Cell,
    rep: int,
    workdir: Path,
    args: argparse.Namespace,
    seconds: float,
    impls: dict[str, str],
) -> Run:
    """run_one, after waiting for a quiet machine; a load run that shared the machine with
    more than --noisy % of a core of other work is measured once more, keeping the quieter."""
    wait_idle(args.wait_idle)
    run = run_one(spec, cell, rep, workdir, args.cell_timeout, seconds, args.warm_seconds, impls)
    if run.ok and cell.kind == "load" and run.other_cpu_pct > args.noisy:
        print(
            f"  {cell.label} {spec.name}: other processes used {run.other_cpu_pct:.0f}% of a core;"
            " measuring again",
            file=sys.stderr,
        )
        wait_idle(args.wait_idle)
        again = run_one(
            spec, cell, rep, workdir, args.cell_timeout, seconds, args.warm_seconds, impls
        )
        if not again.ok or again.other_cpu_pct < run.other_cpu_pct:
            run = again
    return run


# --------------------------------------------------------------------------- report


def _med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarise(
    runs: list[Run], cells: Sequence[Cell], servers: Sequence[str]
) -> dict[tuple[str, str], dict[str, float | str]]:
    out: dict[tuple[str, str], dict[str, float | str]] = {}
    for cell in cells:
        for name in servers:
            mine = [r for r in runs if r.server == name and r.cell == cell.label]
            good = [r for r in mine if r.ok]
            bad = [r for r in mine if not r.ok]
            entry: dict[str, float | str] = {
                "reps": len(good),
                "failed": len(bad),
                "error": bad[0].error if bad else "",
            }
            if good:
                entry["msgs_per_s"] = _med([r.msgs_per_s for r in good])
                entry["mb_per_s"] = _med([r.mb_per_s for r in good])
                entry["cpu_s"] = _med([r.cpu_s for r in good])
                entry["cpu_us_per_msg"] = _med(
                    [1e6 * r.cpu_s / r.received for r in good if r.received]
                )
                entry["cpu_pct"] = _med([100 * r.cpu_s / r.wall_s for r in good if r.wall_s > 0])
                entry["client_cpu_pct"] = _med(
                    [100 * r.client_cpu_s / r.wall_s for r in good if r.wall_s > 0]
                )
                entry["other_cpu_pct"] = _med([r.other_cpu_pct for r in good])
                entry["peak_rss_mib"] = _med([r.peak_rss_kib / 1024 for r in good])
                entry["idle_kib_per_conn"] = _med([r.idle_kib_per_conn for r in good])
            out[(cell.label, name)] = entry
    return out


def primary(cell: Cell, entry: dict[str, float | str]) -> float | None:
    key = "idle_kib_per_conn" if cell.kind == "idle" else ("mb_per_s" if cell.big else "msgs_per_s")
    v = entry.get(key)
    return float(v) if isinstance(v, float) else None


def fmt_num(v: float) -> str:
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def cell_metric(cell: Cell) -> str:
    if cell.kind == "idle":
        return "KiB RSS each"
    return "MB/s" if cell.big else "msgs/s"


def report(
    runs: list[Run], cells: Sequence[Cell], servers: Sequence[str], specs: dict[str, ServerSpec]
) -> str:
    summary = summarise(runs, cells, servers)
    parts: list[str] = []

    def mark(entry: dict[str, float | str]) -> str:
        return "" if not entry["failed"] else f" (!{entry['failed']} failed)"

    rows = []
    for cell in cells:
        row = [f"{cell.label}: {cell_metric(cell)}"]
        for name in servers:
            e = summary[(cell.label, name)]
            v = primary(cell, e)
            row.append(("-" if v is None else fmt_num(v)) + mark(e))
        rows.append(row)
    parts.append("Medians (higher is better, except KiB RSS each):\n")
    parts.append(table(["cell", *servers], rows))

    rows = []
    for cell in cells:
        for name in servers:
            e = summary[(cell.label, name)]
            row = [cell.label, name]
            if not e["reps"]:
                row += ["-"] * 8
            elif cell.kind == "idle":
                row += ["", "", fmt_num(float(e["idle_kib_per_conn"])), "", "", "", ""]
                row += [fmt_num(float(e["peak_rss_mib"]))]
            else:
                row += [fmt_num(float(e["msgs_per_s"])), fmt_num(float(e["mb_per_s"])), ""]
                row += [fmt_num(float(e["cpu_us_per_msg"]))]
                row += [
                    f"{float(e[k]):.0f}" for k in ("cpu_pct", "client_cpu_pct", "other_cpu_pct")
                ]
                row += [fmt_num(float(e["peak_rss_mib"]))]
            status = f"{e['reps']} ok" + (
                f", {e['failed']} failed: {str(e['error'])[:160]}" if e["failed"] else ""
            )
            rows.append([*row, status])
    parts.append(
        "\nDetails (medians). CPU % is CPU time / wall time of the timed batch, 100 = one core:"
        " server, smtp-source clients, and everything else on the machine (high = noisy run).\n"
    )
    header = ["cell", "server", "msgs/s", "MB/s", "KiB/conn", "server CPU us/msg"]
    header += ["server CPU %", "client CPU %", "other CPU %", "peak RSS MiB", "runs"]
    parts.append(table(header, rows))

    ours = [s for s in servers if specs[s].family == "smtpx"]
    peers = [s for s in servers if specs[s].family != "smtpx"]
    # One row per (cell, smtpx variant): its ratio to every peer, and to the first smtpx
    # variant listed (so "smtpx-workers2 vs smtpx" reads as the gain from the second worker).
    others = ours[1:]
    if ours and (peers or others):
        header = ["cell", "smtpx variant", *[f"/ {b}" for b in peers]]
        if others:
            header.append(f"/ {ours[0]}")
        rows = []
        for cell in cells:
            for a in ours:
                row = [f"{cell.label}: {cell_metric(cell)}", a]
                va = primary(cell, summary[(cell.label, a)])
                for b in [*peers, *([ours[0]] if others else [])]:
                    vb = primary(cell, summary[(cell.label, b)])
                    row.append(f"{va / vb:.2f}x" if va is not None and vb and a != b else "")
                rows.append(row)
        parts.append(
            "\nRatios (row's server / column's server; for KiB RSS each, lower is better):\n"
        )
        parts.append(table(header, rows))
    targets = target_report(summary, cells, servers, runs)
    if targets:
        parts.append("\nIssue 6 targets (one process, compiled, default loop unless said):\n")
        parts.append(targets)
    return "\n".join(parts)


def target_report(
    summary: dict[tuple[str, str], dict[str, float | str]],
    cells: Sequence[Cell],
    servers: Sequence[str],
    runs: Sequence[Run],
) -> str:
    """Issue 6's targets, as far as this run measured them: one table row per target."""
    by_label = {c.label: c for c in cells}

    def value(label: str, server: str) -> float | None:
        if label not in by_label or server not in servers:
            return None
        return primary(by_label[label], summary[(label, server)])

    rows: list[list[str]] = []

    def ratio(label: str, a: str, b: str, want: float, what: str) -> None:
        va, vb = value(label, a), value(label, b)
        if va is None or not vb:
            return
        got = va / vb
        rows.append([what, f">= {want:g}x", f"{got:.2f}x", "met" if got >= want else "NOT met"])

    ratio("c20 1 KiB", "smtpx", "node", 1.0, "c20 1 KiB msgs/s: smtpx / node")
    ratio("c20 1 KiB", "smtpx", "aiosmtpd", 4.0, "c20 1 KiB msgs/s: smtpx / aiosmtpd")
    ratio("c20 100 KiB", "smtpx", "node", 1.0, "c20 100 KiB MB/s: smtpx / node")
    ratio("c20 5 MiB", "smtpx", "node", 1.0, "c20 5 MiB MB/s: smtpx / node")
    for cell in cells:
        if cell.kind == "load":
            what = f"{cell.label} {cell_metric(cell)}: smtpx-pure / aiosmtpd"
            ratio(cell.label, "smtpx-pure", "aiosmtpd", 2.0, what)
        else:  # less memory is better: aiosmtpd's KiB per connection over pure smtpx's
            what = f"{cell.label} KiB each: aiosmtpd / smtpx-pure"
            ratio(cell.label, "aiosmtpd", "smtpx-pure", 2.0, what)
    for cell in cells:
        if cell.kind == "idle":
            for name in ("smtpx", "smtpx-pure"):
                v = value(cell.label, name)
                if v is not None:
                    ok = "met" if v <= 10.0 else "NOT met"
                    rows.append([f"{cell.label}: {name} KiB RSS each", "<= 10", fmt_num(v), ok])
    ours = [r for r in runs if r.server.startswith("smtpx")]
    if ours:
        lost = [r for r in ours if r.error.startswith("LOST")]
        failed = [r for r in ours if not r.ok]
        got = f"{len(lost)} lost, {len(failed)} failed of {len(ours)} smtpx runs"
        rows.append(
            ["nothing lost (smtpx, every variant)", "0", got, "NOT met" if failed else "met"]
        )
    return table(["target", "want", "got", ""], rows) if rows else ""


def machine_description() -> dict[str, str]:
    model = "?"
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": model,
        "kernel": platform.release(),
        "python": sys.version.split()[0],
    }
    for key, argv in (
        ("postfix", ["dpkg-query", "-W", "-f", "${Version}", "postfix"]),
        ("node", ["node", "--version"]),
    ):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
            if r.returncode == 0:
                info[key] = r.stdout.strip()
        except OSError:
            pass
    return info


# --------------------------------------------------------------------------- main


def raise_nofile(want: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        # Children inherit the limit, so the sinks can accept the idle cell's connections too.
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--servers",
        default="smtpx,smtpx-pure,aiosmtpd,node,stdlib,smtp-sink",
        help="comma-separated; unavailable ones are skipped with a note (default: %(default)s)",
    )
    p.add_argument("--reps", type=int, default=3, help="repetitions, >= 1 (default: 3)")
    p.add_argument("--cells", choices=sorted(GRIDS), default="quick")
    p.add_argument(
        "--only",
        help="comma-separated substrings; run only the cells whose label contains one, "
        "e.g. 'c20 1 KiB,idle'",
    )
    p.add_argument(
        "--loop",
        choices=("asyncio", "uvloop", "both"),
        default="asyncio",
        help="event loop for the smtpx servers (uvloop must be importable)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="run the smtpx servers named in --servers as N processes on one port "
        "(smtpx's forking runner, SO_REUSEPORT): smtpx becomes smtpx-workersN (default: 1)",
    )
    p.add_argument("--smtpx-path", default=str(REPO), help="put on PYTHONPATH for the smtpx sinks")
    p.add_argument(
        "--baseline-path",
        help="a built checkout of an older smtpx: adds the server smtpx-base (compiled, "
        "asyncio, its own sink script) to compare with in the same run",
    )
    p.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="target length of each timed batch (default: 0.8 quick, 2 full)",
    )
    p.add_argument(
        "--warm-seconds",
        type=float,
        default=None,
        help="untimed warm-up before each timed batch (default: 0.6 quick, 1 full)",
    )
    p.add_argument(
        "--wait-idle",
        type=float,
        default=3.0,
        help="before each run, wait up to this many seconds for other load to stop (default: 3)",
    )
    p.add_argument(
        "--noisy",
        type=float,
        default=25.0,
        help="re-measure a run once if other processes used more than this %% of a core",
    )
    p.add_argument("--cell-timeout", type=float, default=120.0, help="seconds per run")
    p.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="stop starting runs after this (default: 10 quick, 40 full)",
    )
    p.add_argument("--json", help="also write every run and the machine description here")
    args = p.parse_args(argv)
    if args.reps < 1:
        p.error("--reps must be >= 1")
    if args.workers < 1:
        p.error("--workers must be >= 1")
    return args


def select_servers(args: argparse.Namespace, specs: dict[str, ServerSpec]) -> list[str]:
    wanted = [s.strip() for s in args.servers.split(",") if s.strip()]
    out: list[str] = []
    for name in wanted:
        variants = [name]
        mine = specs.get(name) is not None and specs[name].family == "smtpx"
        if mine and args.workers > 1 and "-workers" not in name:
            base, uv, _ = name.partition("-uvloop")
            variants = [f"{base}-workers{args.workers}{uv}"]
        if mine and args.loop != "asyncio" and "uvloop" not in name:
            if args.loop == "uvloop":
                variants = [f"{v}-uvloop" for v in variants]
            else:
                variants = [x for v in variants for x in (v, f"{v}-uvloop")]
        for v in variants:
            if v not in specs:
                sys.exit(f"unknown server {v!r}; known: {', '.join(specs)}")
            if v not in out:
                out.append(v)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("smtp-source") is None:
        sys.exit("smtp-source not found: install Debian's postfix package (see bench/README.md)")
    specs = server_specs(args.smtpx_path, args.workers, args.baseline_path)
    servers: list[str] = []
    for name in select_servers(args, specs):
        why = unavailable_reason(specs[name])
        if why:
            print(f"skipping {name}: {why}", file=sys.stderr)
        else:
            servers.append(name)
    if not servers:
        sys.exit("no server available")
    cells = GRIDS[args.cells]
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        cells = tuple(c for c in cells if any(w in c.label for w in wanted))
        if not cells:
            sys.exit(f"--only {args.only!r} matches no cell of the {args.cells} grid")
    raise_nofile(IDLE_CONNECTIONS * 4 + 256)
    seconds = args.seconds or DEFAULT_SECONDS[args.cells][0]
    args.warm_seconds = args.warm_seconds or DEFAULT_SECONDS[args.cells][1]
    budget = 60 * (args.max_minutes or (10 if args.cells == "quick" else 40))
    started = time.monotonic()
    runs: list[Run] = []
    impls: dict[str, str] = {}
    truncated = False
    interrupted = False
    try:
        with tempfile.TemporaryDirectory(prefix="smtpx-bench-") as tmp:
            workdir = Path(tmp)
            os.chmod(workdir, 0o755)
            for rep in range(args.reps):
                # Round robin: every repetition starts with the next server.
                order = servers[rep % len(servers) :] + servers[: rep % len(servers)]
                for cell in cells:
                    for name in order:
                        if time.monotonic() - started > budget:
                            truncated = True
                            break
                        run = measure(specs[name], cell, rep, workdir, args, seconds, impls)
                        runs.append(run)
                        if run.ok and cell.kind == "idle":
                            shown = f"{run.idle_kib_per_conn:.1f} KiB/conn"
                        elif run.ok:
                            shown = (
                                f"{run.msgs_per_s:,.0f} msgs/s {run.mb_per_s:,.1f} MB/s "
                                f"({run.received} msgs in {run.wall_s:.2f}s)"
                            )
                        else:
                            shown = f"FAILED {run.error}"
                        print(
                            f"[rep {rep + 1}/{args.reps} {time.monotonic() - started:5.0f}s] "
                            f"{cell.label:>16} {name:>18}: {shown}",
                            file=sys.stderr,
                            flush=True,
                        )
    except KeyboardInterrupt:
        # Every process was stopped on the way out; report what was measured so far.
        interrupted = True
    finally:
        stop_all()
    machine = machine_description()
    elapsed = time.monotonic() - started
    print(
        f"\nMachine: {machine['nproc']} CPUs ({machine['cpu']}), Linux {machine['kernel']}, "
        f"Python {machine['python']}, postfix {machine.get('postfix', '?')}, "
        f"node {machine.get('node', '-')}"
    )
    print(
        f"Grid: {args.cells}, {args.reps} repetitions, timed batches of ~{seconds:g} s "
        f"after ~{args.warm_seconds:g} s of warm-up, "
        f"total {elapsed:.0f} s"
    )
    print("Servers: " + "; ".join(f"{n} = {impls.get(n, '?')}" for n in servers))
    if interrupted:
        print("NOTE: interrupted; the tables show only the runs that finished")
    if truncated:
        print(f"NOTE: time budget of {budget / 60:.0f} min reached; later runs were skipped")
    print()
    print(report(runs, cells, servers, specs))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(
                {"machine": machine, "args": vars(args), "runs": [asdict(r) for r in runs]},
                f,
                indent=1,
            )
    lost = [r for r in runs if r.error.startswith("LOST")]
    return 1 if lost or truncated or interrupted or any(not r.ok for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
