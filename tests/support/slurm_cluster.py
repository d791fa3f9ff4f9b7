"""A real SLURM cluster on this machine for the launcher tests (the recipe measured in DESIGN.md).

Debian's slurm-wlm + munge; one slurmctld and two emulated slurmd nodes (n1, n2) on 127.0.0.1
with 2 fake GPUs each (character devices, so `--gres=gpu:N` schedules). Everything lives in a
scratch directory; the daemons this fixture starts are stopped by their PIDs, never by name.
Installing needs root and the Debian package mirror (apt-get, ~10 s); every wait is bounded.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = ("slurm-wlm", "munge")


class SlurmUnavailable(RuntimeError):
    """This machine cannot run SLURM (no root, no packages); the message says why."""


def _run(command: list[str], timeout: float = 60, check: bool = True, env=None, cwd=None) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env,
                            stdin=subprocess.DEVNULL, cwd=cwd)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    return result


def ensure_installed() -> None:
    if all(shutil.which(tool) for tool in ("sbatch", "slurmctld", "slurmd", "munged")):
        return
    if os.geteuid() != 0:
        raise SlurmUnavailable("slurm-wlm/munge are not installed and installing needs root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        _run(["apt-get", "update", "-qq"], timeout=300, env=env)
        _run(["apt-get", "install", "-y", "-qq", *PACKAGES], timeout=600, env=env)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        raise SlurmUnavailable(f"apt-get install {' '.join(PACKAGES)} failed: {exc}") from None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SlurmCluster:
    """Start with `start()`, stop with `stop()`; `env` is the environment for sbatch/squeue/..."""

    def __init__(self, root: Path, nodes: tuple[str, ...] = ("n1", "n2"), gpus_per_node: int = 2):
        self.root = Path(root)
        self.nodes = nodes
        self.gpus_per_node = gpus_per_node
        self.processes: list[subprocess.Popen] = []
        self.munged_pid: int | None = None
        self.conf = self.root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    # -- configuration ---------------------------------------------------------------------------

    def write_config(self) -> None:
        for sub in ("state", "spool", "log", "run", "gpus"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        for index in range(self.gpus_per_node):  # fake GPUs: file-less gres makes a node INVAL
            device = self.root / "gpus" / f"nvidia{index}"
            if not device.exists():
                os.mknod(device, 0o666 | 0o020000, os.makedev(1, 3))
        host = socket.gethostname().split(".")[0]
        cpus = os.cpu_count() or 1
        detected = _run(["slurmd", "-C"], timeout=30).stdout
        memory = int(re.search(r"RealMemory=(\d+)", detected).group(1))
        ctld_port, base_port = _free_port(), 17000 + (os.getpid() % 1000) * 4
        node_lines = "\n".join(
            f"NodeName={name} NodeHostname={host} NodeAddr=127.0.0.1 Port={base_port + i} CPUs={cpus} "
            f"RealMemory={max(512, memory - 1024)} Gres=gpu:{self.gpus_per_node} State=UNKNOWN"
            for i, name in enumerate(self.nodes)
        )
        r = self.root
        self.conf.write_text(f"""ClusterName=kocpt-test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
MailProg=/bin/true
JobRequeue=1
ReturnToService=2
MinJobAge=600
KillWait=10
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool/%n
SlurmctldPidFile={r}/run/slurmctld.pid
SlurmdPidFile={r}/run/slurmd-%n.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd-%n.log
GresTypes=gpu
{node_lines}
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
""")
        (r / "gres.conf").write_text(f"Name=gpu File={r}/gpus/nvidia[0-{self.gpus_per_node - 1}]\n")

    # -- daemons ---------------------------------------------------------------------------------

    def _start_munge(self) -> None:
        check = _run(["munge", "-n"], timeout=10, check=False)
        if check.returncode == 0:
            return  # a munged is already running (not ours: leave it alone)
        for path in ("/run/munge", "/var/lib/munge", "/var/log/munge"):
            Path(path).mkdir(parents=True, exist_ok=True)
            shutil.chown(path, "munge", "munge")
        if not Path("/etc/munge/munge.key").exists():
            _run(["runuser", "-u", "munge", "--", "/usr/sbin/mungekey", "--create"], timeout=30)
        _run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], timeout=30)
        pid_file = Path("/run/munge/munged.pid")
        deadline = time.time() + 15
        while not pid_file.exists() and time.time() < deadline:
            time.sleep(0.2)
        self.munged_pid = int(pid_file.read_text()) if pid_file.exists() else None

    def _spawn(self, command: list[str], log: str) -> None:
        with open(self.root / "log" / log, "ab") as out:
            self.processes.append(subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                                   stdin=subprocess.DEVNULL, env=self.env, start_new_session=True))

    def start(self, timeout: float = 90) -> "SlurmCluster":
        ensure_installed()
        self.write_config()
        self._start_munge()
        self._spawn(["slurmctld", "-D", "-c", "-f", str(self.conf)], "slurmctld.out")
        for name in self.nodes:
            self._spawn(["slurmd", "-D", "-N", name, "-f", str(self.conf)], f"slurmd-{name}.out")
        deadline = time.time() + timeout
        states = ""
        while time.time() < deadline:
            result = _run(["sinfo", "-h", "-N", "-o", "%N %T"], timeout=10, check=False, env=self.env)
            states = result.stdout.strip()
            if result.returncode == 0 and states.count("idle") == len(self.nodes):
                return self
            for process in self.processes:
                if process.poll() is not None:
                    self.stop()
                    raise SlurmUnavailable(f"a SLURM daemon exited ({process.args[0]}); see {self.root / 'log'}")
            time.sleep(0.5)
        self.stop()
        raise SlurmUnavailable(f"nodes not idle after {timeout:.0f}s: {states!r}; see {self.root / 'log'}")

    def stop(self) -> None:
        _run(["scancel", "--user=root"], timeout=10, check=False, env=self.env)
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in reversed(self.processes):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        self.processes = []
        if self.munged_pid:
            try:
                os.kill(self.munged_pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            self.munged_pid = None

    # -- jobs ------------------------------------------------------------------------------------

    def sbatch(self, args: list[str], cwd: Path, env: dict | None = None) -> int:
        result = _run(["sbatch", "--parsable", *args], timeout=30, env={**self.env, **(env or {})}, cwd=cwd)
        return int(result.stdout.strip().split(";")[0])

    def job(self, job_id: int) -> dict:
        result = _run(["scontrol", "show", "job", str(job_id)], timeout=10, check=False, env=self.env)
        return dict(re.findall(r"(\w+)=(\S*)", result.stdout))

    def wait(self, job_id: int, states=("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"),
             timeout: float = 240) -> dict:
        deadline = time.time() + timeout
        info = {}
        while time.time() < deadline:
            info = self.job(job_id)
            if info.get("JobState") in states:
                return info
            time.sleep(1)
        raise TimeoutError(f"job {job_id} still {info.get('JobState')} after {timeout:.0f}s")

    def idle_nodes(self) -> int:
        result = _run(["sinfo", "-h", "-N", "-o", "%N %T"], timeout=10, check=False, env=self.env)
        return result.stdout.split().count("idle")

    def scontrol(self, *args: str) -> None:
        _run(["scontrol", *args], timeout=10, env=self.env)

    def scancel(self, *args: str) -> None:
        _run(["scancel", *args], timeout=10, env=self.env)
