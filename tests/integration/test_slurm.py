"""`sbatch pretrain/launch.sh configs/demo.yaml` on a real (local) SLURM: 1 node, 2 nodes, and
the pre-timeout USR1 -> checkpoint -> requeue -> resume cycle."""

from __future__ import annotations

import time

import pytest

from stagekit.paths import LLAMA2_TOKENIZER, REPO
from tests.support.pretrain import metrics, tokenized_corpus
from tests.support.slurm_cluster import SlurmCluster, SlurmUnavailable

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    try:
        slurm = SlurmCluster(tmp_path_factory.mktemp("slurm")).start()
    except SlurmUnavailable as exc:
        pytest.skip(f"no SLURM on this machine: {exc}")
    yield slurm
    slurm.stop()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tokenized_corpus(tmp_path_factory)[0]


def demo_overrides(data_dir, run_dir, full_steps: int = 3) -> list[str]:
    """configs/demo.yaml, pointed at the test data and a random-init tiny model."""
    return [
        f"--set=tokenizer={LLAMA2_TOKENIZER}",
        "--set=init=random",
        f"--set=data.blend.0.path={data_dir}",
        f"--set=checkpoint.dir={run_dir}",
        "--set=model.base_vocab_size=31000",
        "--set=stages.0.steps=2",
        f"--set=stages.1.steps={full_steps}",
        "--set=eval.interval=0",
        "--set=eval.iters=1",
    ]


def submit(cluster, tmp_path, name, extra_sbatch, overrides, env=None) -> tuple[int, object]:
    log = tmp_path / f"{name}.out"
    job = cluster.sbatch(
        [f"--output={log}", "--gres=gpu:2", f"--job-name={name}", *extra_sbatch,
         "pretrain/launch.sh", "configs/demo.yaml", *overrides],
        cwd=REPO, env={"OMP_NUM_THREADS": "1", **(env or {})},
    )
    return job, log


def test_one_node_two_processes(cluster, data_dir, tmp_path):
    run_dir = tmp_path / "run"
    job, log = submit(cluster, tmp_path, "one-node", ["--nodes=1"], demo_overrides(data_dir, run_dir))
    info = cluster.wait(job)
    text = log.read_text()
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", text[-3000:]
    assert "on 1 node(s)" in text and "2 proc/node, rendezvous 127.0.0.1:" in text
    assert "world_size=2 tensor=2 pipeline=1 data=1" in text
    assert (run_dir / "latest").read_text().strip() == "iter_0000005"
    assert sorted(metrics(run_dir)) == [1, 2, 3, 4, 5]


def test_two_nodes_one_torchrun_each(cluster, data_dir, tmp_path):
    run_dir = tmp_path / "run"
    job, log = submit(cluster, tmp_path, "two-nodes", ["--nodes=2"], demo_overrides(data_dir, run_dir),
                      env={"NPROC_PER_NODE": "1", "MASTER_PORT": "29621"})
    info = cluster.wait(job)
    text = log.read_text()
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", text[-3000:]
    assert info["NodeList"] == "n[1-2]"
    assert "on 2 node(s) [n[1-2]], 1 proc/node, rendezvous 127.0.0.1:29621" in text
    assert "world_size=2 tensor=2 pipeline=1 data=1" in text
    assert (run_dir / "latest").read_text().strip() == "iter_0000005"


def test_usr1_checkpoints_requeues_and_resumes(cluster, data_dir, tmp_path):
    run_dir = tmp_path / "run"
    job, log = submit(cluster, tmp_path, "requeue", ["--nodes=1"], demo_overrides(data_dir, run_dir, full_steps=28))
    deadline = time.time() + 180
    while "step      3/30" not in (log.read_text() if log.exists() else ""):
        assert time.time() < deadline, "the job never reached step 3"
        assert cluster.job(job).get("JobState") in ("PENDING", "RUNNING", "CONFIGURING"), log.read_text()[-3000:]
        time.sleep(0.5)
    cluster.scancel("-b", "-s", "USR1", str(job))  # what --signal=B:USR1@300 sends before the limit
    while "requeueing job" not in log.read_text():
        assert time.time() < deadline, log.read_text()[-3000:]
        time.sleep(0.5)
    text = log.read_text()
    stopped = [line for line in text.splitlines() if line.startswith("stopping at step")]
    assert stopped and "stop file" in stopped[0], text[-3000:]
    step = int(stopped[0].split()[3].rstrip(":"))
    checkpoint = run_dir / f"iter_{step:07d}"
    assert (checkpoint / "metadata.json").is_file()
    # A requeued job waits for its BeginTime (30-120 s); start it now, but only once its node has
    # cleaned up the first run (a relaunch within the same second finds its credential revoked).
    while not (cluster.job(job).get("JobState") == "PENDING" and cluster.idle_nodes() == 2):
        assert time.time() < deadline, cluster.job(job)
        time.sleep(0.5)
    time.sleep(2)
    cluster.scontrol("update", f"JobId={job}", "StartTime=now")
    info = cluster.wait(job, timeout=240)
    text = log.read_text()
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", text[-3000:]
    assert info["Restarts"] == "1"
    assert f"resumed from {checkpoint} at step {step}" in text
    assert "(restart 1)" in text
    assert (run_dir / "latest").read_text().strip() == "iter_0000030"
    assert sorted(metrics(run_dir)) == list(range(1, 31))
