"""Where the smtpx sink spends its time during one load batch (cProfile or py-spy).

Starts the same sink bench/load.py uses (bench/servers/smtpx_sink.py's server, one process),
warms it up with smtp-source, then profiles exactly one timed batch and prints the functions
with the most own time (time in the function itself, not in what it calls)::

    python bench/profile_sink.py                         # cProfile, c20 x 1 KiB, 20000 msgs
    python bench/profile_sink.py --pure                  # the pure-Python twins
    python bench/profile_sink.py --tool py-spy --native  # sampling, Cython/C frames too

cProfile instruments every Python call, which slows a call-heavy server down by about 2x and
inflates the share of small functions; it never sees inside Cython code (a compiled function
counts as one builtin call). py-spy samples the running process from outside (`pip install
py-spy`; needs ptrace, so run as root or with CAP_SYS_PTRACE): unbiased shares, and with
``--native`` the compiled frames by their C names.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter as Tally
from pathlib import Path

import load

HERE = Path(__file__).resolve().parent


# ------------------------------------------------------------------ child: the profiled sink


def serve_profiled(port: int, stats: str, prof_path: str, loop_name: str) -> None:
    """The smtpx sink, with cProfile switched on by SIGHUP and dumped by SIGUSR2."""
    sys.path.insert(0, str(HERE / "servers"))
    from _common import Counter  # noqa: PLC0415 (servers/ is not a package)
    from smtpx_sink import make_server  # noqa: PLC0415

    import smtpx  # noqa: PLC0415

    counter = Counter(f"smtpx {getattr(smtpx, 'IMPLEMENTATION', '?')} {loop_name} (profiled)")
    profiler = cProfile.Profile()

    def start() -> None:
        # Runs on the loop's thread, so the profiler hooks the thread that serves.
        profiler.enable()

    def stop() -> None:
        profiler.disable()
        profiler.dump_stats(prof_path)
        counter.dump(stats)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, start)
        loop.add_signal_handler(signal.SIGUSR2, stop)
        await make_server(port, counter).serve()

    if loop_name == "uvloop":
        import uvloop  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415

        uvloop.run(main())
    else:
        asyncio.run(main())


# ------------------------------------------------------------------ parent: drive and report


def own_time_from_raw(raw: str) -> tuple[Tally[str], Tally[str], int]:
    """py-spy --format raw (folded stacks, "frame;frame;... count") -> own and total samples."""
    own: Tally[str] = Tally()
    total: Tally[str] = Tally()
    samples = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        samples += n
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    return own, total, samples


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--tool", choices=("cprofile", "py-spy"), default="cprofile")
    p.add_argument("--pure", action="store_true", help="SMTPX_NO_EXTENSIONS=1")
    p.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    p.add_argument("--conc", type=int, default=20)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--count", type=int, default=20_000, help="messages in the profiled batch")
    p.add_argument("--warm", type=int, default=5_000, help="messages sent before profiling")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--native", action="store_true", help="py-spy --native (C/Cython frames)")
    p.add_argument("--rate", type=int, default=500, help="py-spy samples per second")
    p.add_argument(
        "--serve", nargs=4, metavar=("PORT", "STATS", "PROF", "LOOP"), help=argparse.SUPPRESS
    )
    args = p.parse_args()
    if args.serve:
        port, stats, prof, loop_name = args.serve
        serve_profiled(int(port), stats, prof, loop_name)
        return 0
    if shutil.which("smtp-source") is None:
        sys.exit("smtp-source not found (see bench/README.md)")
    spy = shutil.which("py-spy")
    if args.tool == "py-spy" and spy is None:
        sys.exit("py-spy not found: pip install py-spy")

    with tempfile.TemporaryDirectory(prefix="smtpx-profile-") as tmp:
        workdir = Path(tmp)
        prof_path = workdir / "sink.prof"
        env = load._python_env({"SMTPX_NO_EXTENSIONS": "1"} if args.pure else {}, str(load.REPO))
        if args.tool == "cprofile":
            argv = lambda port, stats: [  # noqa: E731
                sys.executable,
                str(Path(__file__).resolve()),
                "--serve",
                str(port),
                stats,
                str(prof_path),
                args.loop,
            ]
        else:
            argv = lambda port, stats: [  # noqa: E731
                sys.executable,
                str(HERE / "servers" / "smtpx_sink.py"),
                "--port",
                str(port),
                "--stats",
                stats,
                "--loop",
                args.loop,
            ]
        spec = load.ServerSpec(name="smtpx-profiled", family="smtpx", argv=argv, env=env)
        load.raise_nofile(4096)
        try:
            with load.running_server(spec, workdir) as server:
                load.drive(server, args.conc, args.size, args.warm, 120.0)
                spy_proc = None
                raw_path = workdir / "spy.txt"
                if args.tool == "cprofile":
                    server.proc.send_signal(signal.SIGHUP)
                    time.sleep(0.2)  # let the loop run the handler before the batch starts
                else:
                    assert spy is not None
                    cmd = [spy, "record", "--pid", str(server.proc.pid), "--format", "raw"]
                    # --function: one entry per function, not per line of it.
                    cmd += ["--rate", str(args.rate), "--output", str(raw_path), "--function"]
                    # --nonblocking: sample without stopping the server (py-spy otherwise
                    # pauses it for every sample, which costs more than the sampling rate
                    # suggests); --native needs the pause to unwind C stacks.
                    cmd += ["--native"] if args.native else ["--nonblocking"]
                    spy_proc = load._spawn(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                    time.sleep(1.0)  # py-spy attaches
                cpu0 = server.cpu_seconds()
                wall = load.drive(server, args.conc, args.size, args.count, 300.0)
                cpu = server.cpu_seconds() - cpu0
                if spy_proc is not None:
                    spy_proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
                    spy_proc.wait(30)
                received, _, impl = load.received_counts(server)
        finally:
            load.stop_all()
        sent = args.warm + args.count
        print(
            f"{impl}: c{args.conc} x {load.size_label(args.size)}, {args.count} messages in"
            f" {wall:.2f} s under {args.tool} = {args.count / wall:,.0f} msgs/s,"
            f" server CPU {1e6 * cpu / args.count:.0f} us/msg;"
            f" {'nothing lost' if received == sent else f'LOST: sent {sent}, counted {received}'}"
        )
        if args.tool == "cprofile":
            st = pstats.Stats(str(prof_path))
            entries = st.stats.items()  # type: ignore[attr-defined]
            total = st.total_tt  # type: ignore[attr-defined]
            # Time blocked in epoll/select.poll is the loop waiting for the client, not work.
            waiting = sum(v[2] for (_f, _l, fn), v in entries if "poll' of 'select." in fn)
            busy = total - waiting
            print(
                f"\nTop {args.top} functions by own time (cProfile: {total:.2f} s profiled,"
                f" {waiting:.2f} s of it waiting in epoll, % of the other {busy:.2f} s):\n"
            )
            print("| own s | own % of busy | calls | cumulative s | function |")
            print("|---|---|---|---|---|")
            rows = sorted(entries, key=lambda kv: kv[1][2], reverse=True)
            for (file, line, func), (_cc, nc, tt, ct, _callers) in rows[: args.top]:
                where = "built-in" if file == "~" else f"{_short(file)}:{line}"
                share = "-" if "poll' of 'select." in func else f"{100 * tt / busy:.1f}"
                print(f"| {tt:.3f} | {share} | {nc:,} | {ct:.3f} | {_short(func)} ({where}) |")
        else:
            own, incl, samples = own_time_from_raw(raw_path.read_text(errors="replace"))
            print(f"\nTop {args.top} frames by own samples (py-spy, {samples} samples):\n")
            print("| own % | total % | frame |")
            print("|---|---|---|")
            for frame, n in own.most_common(args.top):
                own_pct, incl_pct = 100 * n / samples, 100 * incl[frame] / samples
                print(f"| {own_pct:.1f} | {incl_pct:.1f} | {_short(frame)} |")
    return 0


def _short(text: str) -> str:
    # Site-packages and the repository prefix say nothing; keep the module path.
    for prefix in (str(load.REPO) + os.sep, sys.prefix + os.sep):
        text = text.replace(prefix, "")
    return text.replace("|", "\\|")


if __name__ == "__main__":
    sys.exit(main())
