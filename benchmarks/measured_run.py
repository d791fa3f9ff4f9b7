"""Run one benchmark command and measure it: wall time, CPU seconds of its whole process tree, peak
RSS of the tree (psutil polls every 0.2 s), and how busy the rest of the machine was meanwhile."""

from __future__ import annotations

import os
import resource
import subprocess
import time
from pathlib import Path

import psutil

from stagekit.paths import REPO

MB = 1_000_000


class BenchmarkError(RuntimeError):
    """A step of the benchmark could not run; printed as one line."""


def run_measured(command: list[str], log_path: Path) -> dict:
    """Run `command` (cwd = repo) to completion; wall time, CPU seconds, peak tree RSS, machine load."""
    usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_before = psutil.cpu_times()
    load_before = os.getloadavg()
    started = time.perf_counter()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        root = psutil.Process(process.pid)
        peak_tree = peak_single = 0
        cpu_by_pid: dict[int, float] = {}  # last seen user+system seconds of every process of the tree
        while process.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            rss = []
            for proc in tree:
                try:
                    with proc.oneshot():
                        rss.append(proc.memory_info().rss)
                        times = proc.cpu_times()
                    cpu_by_pid[proc.pid] = times.user + times.system
                except psutil.NoSuchProcess:
                    pass
            peak_tree, peak_single = max(peak_tree, sum(rss)), max(peak_single, max(rss, default=0))
            time.sleep(0.2)
        code = process.wait()
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_after = psutil.cpu_times()
    # RUSAGE_CHILDREN counts only descendants that were waited for (not datatrove's pool workers,
    # children of its forkserver); the polled sum misses a process's last < 0.2 s. Take the larger.
    own_cpu = max((usage.ru_utime - usage_before.ru_utime) + (usage.ru_stime - usage_before.ru_stime),
                  sum(cpu_by_pid.values()))
    busy = sum(getattr(cpu_after, f) - getattr(cpu_before, f) for f in ("user", "system", "nice", "irq", "softirq", "steal"))
    if code != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        raise BenchmarkError(f"{' '.join(command[:4])} ... exited {code}: {tail[0]} (log: {log_path})")
    return {
        "seconds": round(wall, 2),
        "cpu_seconds": round(own_cpu, 2),
        # The command's own process (Beam's local runner: control, data plane and shuffles; one Python
        # process, so about one core at most): the part that more workers do not spread.
        "root_cpu_seconds": round(cpu_by_pid.get(root.pid, 0.0), 2),
        "peak_rss_tree_mb": round(peak_tree / MB, 1),
        "peak_rss_single_process_mb": round(peak_single / MB, 1),
        "rusage_children_maxrss_mb": round(usage.ru_maxrss * 1024 / MB, 1),  # largest single descendant so far
        # Cores used by everything else on the machine meanwhile (other engineers' jobs).
        "other_load_cores": round(max(0.0, busy - own_cpu) / wall, 2),
        "loadavg_1min_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    }
