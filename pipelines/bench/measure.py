"""Measure one command as a user starts it: wall time and peak RSS of its whole process tree.

    python -m pipelines.bench.measure --result R.json [--max-rss-gb G] [--timeout T] -- CMD ...

This wrapper starts CMD (inheriting its environment and working directory), then until CMD
exits samples every ~50 ms the summed resident set of CMD and all its descendants (from /proc:
`task/*/children` for the tree, `statm` for the RSS; psutil is not a dependency of the project)
and kills the whole tree above `G` GiB or after `T` seconds. Afterwards it records `ru_maxrss`
from `os.wait4` of CMD and from `getrusage(RUSAGE_CHILDREN)` of this wrapper, whose only child
is CMD, so that figure covers CMD's tree alone (the largest single process of it, not the sum).
`peak_rss_mb` is the larger of the tree-sum peak and those two. Only the standard library is
used: the wrapper's own memory (~15 MB) is not counted (the tree starts at CMD).

`measure()` is the same in-process (the tests call it); the benchmark runs the wrapper so that
RUSAGE_CHILDREN is this command's and not the sum of every stage the benchmark started.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

SAMPLE_SECONDS = 0.05
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def _children(pid: int) -> list[int]:
    """Direct children of `pid` (every thread's `children` file; Linux >= 3.5)."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as f:
                out.extend(int(x) for x in f.read().split())
        except (OSError, ValueError):
            continue
    return out


def _children_by_scan(pid: int) -> list[int]:
    """Fallback when `children` files are missing: parent pids of every process."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            out.append(int(name))
    return out


_HAS_CHILDREN_FILE = os.path.exists(f"/proc/self/task/{os.getpid()}/children")


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants alive now."""
    found, todo = [], [pid]
    children = _children if _HAS_CHILDREN_FILE else _children_by_scan
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(c for c in children(p) if c not in found)
    return found


def rss_kb(pid: int) -> int:
    """Resident set of one process in KiB (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * PAGE_KB
    except (OSError, ValueError, IndexError):
        return 0


def tree_rss_kb(pid: int) -> tuple[int, int]:
    """Summed RSS (KiB) of `pid`'s tree, and how many processes it has."""
    pids = tree(pid)
    return sum(rss_kb(p) for p in pids), len(pids)


def over_limit(rss_kb: float, max_rss_gb: float, elapsed: float, timeout: float) -> str | None:
    """Why the watchdog kills a process tree now (over its memory or time limit), or None."""
    if rss_kb > max_rss_gb * 1024 * 1024:
        return (
            f"killed: process tree RSS {rss_kb / 1024 / 1024:.1f} GB over the "
            f"{max_rss_gb:g} GB limit"
        )
    if elapsed > timeout:
        return f"killed: still running after {timeout:.0f} s"
    return None


def kill_tree(pid: int) -> None:
    members = tree(pid)
    with contextlib.suppress(OSError):  # the command leads its own session/group
        os.killpg(pid, signal.SIGKILL)
    for p in members:  # descendants that left the group
        with contextlib.suppress(OSError):
            os.kill(p, signal.SIGKILL)


def _last_line(path: Path | None) -> str | None:
    if path is None or not path.is_file():
        return None
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 65536))
        tail = f.read().decode("utf-8", errors="replace")
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1] if lines else None


def measure(
    cmd: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    stdout: Path | None = None,
    stderr: Path | None = None,
    max_rss_gb: float = 20.0,
    timeout: float = 3600.0,
    sample_seconds: float = SAMPLE_SECONDS,
) -> dict[str, object]:
    """Run `cmd` to its end; wall time, CPU and the peak RSS of its process tree.

    `children_maxrss_mb` is RUSAGE_CHILDREN of the calling process: exact for the wrapper (one
    child), an upper bound over earlier children when called in a process that started others.
    """
    out_f = open(stdout, "wb") if stdout else subprocess.DEVNULL  # noqa: SIM115
    err_f = open(stderr, "wb") if stderr else subprocess.DEVNULL  # noqa: SIM115
    killed: list[str] = []
    peak = {"kb": 0, "processes": 0, "samples": 0}
    start = time.perf_counter()
    try:
        proc = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=out_f, stderr=err_f, start_new_session=True
        )
        done = threading.Event()

        def sample() -> None:
            while True:
                kb, n = tree_rss_kb(proc.pid)
                if done.is_set():  # the top process was reaped: a sample now would be empty
                    return
                peak["samples"] += 1
                if kb > peak["kb"]:
                    peak["kb"] = kb
                peak["processes"] = max(peak["processes"], n)
                verdict = over_limit(kb, max_rss_gb, time.perf_counter() - start, timeout)
                if verdict:
                    killed.append(verdict)
                if killed:
                    kill_tree(proc.pid)
                    return
                if done.wait(sample_seconds):
                    return

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        done.set()
        sampler.join(timeout=10)
        proc.returncode = os.waitstatus_to_exitcode(status)
        # grandchildren left behind (daemonized) are not this command's business after it ends
        # but must not linger: kill what remains of the group
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
    finally:
        for f in (out_f, err_f):
            if f is not subprocess.DEVNULL:
                f.close()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    tree_mb = round(peak["kb"] / 1024, 1)
    top_mb = round(usage.ru_maxrss / 1024, 1)
    children_mb = round(children.ru_maxrss / 1024, 1)
    error = killed[0] if killed else None
    if proc.returncode != 0 and not error:
        line = _last_line(stderr)
        error = f"exit code {proc.returncode}" + (f": {line}" if line else "")
    return {
        "status": "failed" if error else "ok",
        "exit_code": proc.returncode,
        "seconds": round(wall, 3),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
        "peak_rss_mb": max(tree_mb, top_mb, children_mb),
        "tree_peak_rss_mb": tree_mb,
        "top_maxrss_mb": top_mb,
        "children_maxrss_mb": children_mb,
        "max_processes": peak["processes"],
        "samples": peak["samples"],
        "error": error,
    }


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        print("usage: python -m pipelines.bench.measure [options] -- CMD ...", file=sys.stderr)
        return 2
    split = argv.index("--")
    p = argparse.ArgumentParser(prog="python -m pipelines.bench.measure")
    p.add_argument("--result", required=True)
    p.add_argument("--stdout")
    p.add_argument("--stderr")
    p.add_argument("--max-rss-gb", dest="max_rss_gb", type=float, default=20.0)
    p.add_argument("--timeout", type=float, default=3600.0)
    a = p.parse_args(argv[:split])
    outcome = measure(
        argv[split + 1 :],
        stdout=Path(a.stdout) if a.stdout else None,
        stderr=Path(a.stderr) if a.stderr else None,
        max_rss_gb=a.max_rss_gb,
        timeout=a.timeout,
    )
    Path(a.result).write_text(json.dumps(outcome, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
