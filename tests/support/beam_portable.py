"""Beam's portable stack on this machine, for tests: Beam's own local job service and an external SDK
worker pool whose workers are separate processes, each on a free 127.0.0.1 port.

    with portable_services(folder) as services:
        run_job([..., *services.pipeline_args])

The services run in their own process groups (their workers too) and are killed at exit, also when
the block fails; every wait is bounded. The pool starts workers with the `python` on PATH, so this
interpreter's folder goes first on the pool's PATH. The pool runs in `folder`/pool, a folder of its
own, so a job that hands workers paths relative to its own folder fails here as it would on a cluster.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_S = 60.0  # both services answer in ~5 s on an idle machine

# Beam 2.77 binds its gRPC servers (the pool, the job's control/data/state/logging servers) to '[::]:PORT',
# every interface: `python -c ON_LOOPBACK MODULE ARGS...` runs MODULE with them bound to 127.0.0.1 only.
ON_LOOPBACK = """
import runpy, sys, grpc
make_server = grpc.server
def loopback_server(*args, **kwargs):
    server = make_server(*args, **kwargs)
    add_port = server.add_insecure_port
    server.add_insecure_port = lambda address: add_port(address.replace("[::]", "127.0.0.1", 1))
    return server
grpc.server = loopback_server
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


@dataclass
class PortableServices:
    job_port: int
    pool_port: int
    pool_log: Path
    job_service_log: Path

    @property
    def pipeline_args(self) -> list[str]:
        """What a job is given to run on the PortableRunner against these services."""
        return [
            "--runner=PortableRunner",
            f"--job_endpoint=127.0.0.1:{self.job_port}",
            "--environment_type=EXTERNAL",
            f"--environment_config=127.0.0.1:{self.pool_port}",
        ]

    def workers_started(self) -> int:
        """How many SDK worker processes the pool has started (it logs each command)."""
        return self.pool_log.read_text(errors="replace").count("Starting worker with command")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_listening(process: subprocess.Popen, port: int, log: Path, deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{log.name}: the service exited with status {process.returncode}:\n{_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.2)
    raise TimeoutError(f"{log.name}: nothing accepts connections on 127.0.0.1:{port} after {START_TIMEOUT_S:.0f} s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 20) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else "(no log)"


def _stop(process: subprocess.Popen) -> None:
    """Kill the process's group (a pool's workers included): SIGTERM, then SIGKILL after 10 s."""
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)  # start_new_session: its group id is its pid
        try:
            process.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # workers left behind by a leader that exited


@contextlib.contextmanager
def portable_services(folder: Path):
    folder = Path(folder)
    (folder / "pool").mkdir(parents=True, exist_ok=True)
    python = sys.executable
    env = {**os.environ, "PATH": os.path.dirname(python) + os.pathsep + os.environ.get("PATH", "")}
    job_port, pool_port = free_port(), free_port()
    while pool_port == job_port:
        pool_port = free_port()
    services = PortableServices(job_port, pool_port, folder / "worker_pool.log", folder / "job_service.log")
    commands = [
        ([python, "-c", ON_LOOPBACK, "apache_beam.runners.portability.local_job_service_main", f"--port={job_port}"],
         services.job_service_log, job_port),
        ([python, "-c", ON_LOOPBACK, "apache_beam.runners.worker.worker_pool_main", f"--service_port={pool_port}"],
         services.pool_log, pool_port),
    ]
    processes: list[subprocess.Popen] = []
    try:
        for command, log, _ in commands:
            with open(log, "wb") as out:
                processes.append(subprocess.Popen(command, cwd=folder / "pool", env=env, stdin=subprocess.DEVNULL,
                                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.monotonic() + START_TIMEOUT_S
        for process, (_, log, port) in zip(processes, commands):
            _wait_until_listening(process, port, log, deadline)
        yield services
    finally:
        for process in reversed(processes):
            _stop(process)
