"""pretrain/train.py with real Megatron-Core processes on CPU (gloo): layouts, resume, signals, stages.

One reference run (1 process, TP=PP=DP=1, 5 steps, checkpoints at 2, 4, 5) anchors everything:
the other layouts resume its step-2 checkpoint (same weights, optimizer and data position) and
must reproduce its losses; a SIGKILLed run must resume to the same losses and final weights.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from stagekit.paths import REPO
from tests.support.pretrain import checkpoint_tensors, metrics, tiny_config, tokenized_corpus

TRAIN = [sys.executable, "-m", "pretrain.train"]


def torchrun(nproc: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "--module", "pretrain.train"]


def run(command: list[str], timeout: int = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tokenized_corpus(tmp_path_factory)[0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_dir):
    """The uninterrupted single-process run."""
    base = tmp_path_factory.mktemp("reference")
    config = tiny_config(base / "config.yaml", data_dir, base / "run")
    run([*TRAIN, str(config)])
    return config, base / "run"


def assert_same_losses(run_dir: Path, reference_dir: Path, steps, tolerance: float) -> None:
    got, want = metrics(run_dir), metrics(reference_dir)
    for step in steps:
        assert abs(got[step]["loss"] - want[step]["loss"]) <= tolerance, (step, got[step]["loss"], want[step]["loss"])
        assert abs(got[step]["grad_norm"] - want[step]["grad_norm"]) <= 1e-4 * max(1.0, want[step]["grad_norm"])


@pytest.mark.slow
def test_reference_run_trains_logs_and_checkpoints(reference):
    _, run_dir = reference
    records = metrics(run_dir)
    assert sorted(records) == [1, 2, 3, 4, 5]
    assert records[5]["loss"] < records[1]["loss"]  # it learns
    assert records[5]["val_bpc"] > 0 and "val_loss" in records[5]
    for key in ("lr", "grad_norm", "tokens_per_s", "step_time_s", "mfu"):
        assert records[3][key] > 0
    assert (run_dir / "latest").read_text().strip() == "iter_0000005"
    assert {p.name for p in run_dir.glob("iter_*")} == {"iter_0000002", "iter_0000004", "iter_0000005"}
    assert (run_dir / "kocpt_model.json").is_file()
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, nproc, overrides",
    [
        ("tp2", 2, ["parallel.tensor=2"]),
        ("pp2", 2, ["parallel.pipeline=2"]),
        ("dp2", 2, []),  # 2 processes, TP=PP=1 -> DP=2 with the same global batch
    ],
)
def test_parallel_layouts_reproduce_the_single_process_losses(reference, tmp_path, name, nproc, overrides):
    config, reference_dir = reference
    sets = [f"--set=checkpoint.dir={tmp_path / name}", f"--set=checkpoint.load={reference_dir / 'iter_0000002'}"]
    result = run([*torchrun(nproc), str(config), *sets, *[f"--set={o}" for o in overrides]])
    assert "resumed from" in result.stdout
    assert_same_losses(tmp_path / name, reference_dir, steps=[3, 4, 5], tolerance=1e-5)


@pytest.mark.slow
def test_sigkill_then_resume_matches_the_uninterrupted_run(reference, tmp_path):
    config, reference_dir = reference
    run_dir = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([*TRAIN, str(config), f"--set=checkpoint.dir={run_dir}"], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                               start_new_session=True)
    deadline = time.time() + 180
    for line in process.stdout:  # kill as soon as step 4's checkpoint is complete: step 5 is running
        if "saved checkpoint" in line and "iter_0000004" in line:
            os.killpg(process.pid, signal.SIGKILL)
            break
        assert time.time() < deadline, "the run never reached its step-4 checkpoint"
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert (run_dir / "latest").read_text().strip() == "iter_0000004"
    # A save torn by a crash: a .partial directory and an iteration dir without metadata.json.
    (run_dir / "iter_0000005.partial").mkdir()
    (run_dir / "iter_0000005.partial" / "__0_0.distcp").write_bytes(b"torn")
    result = run([*TRAIN, str(config), f"--set=checkpoint.dir={run_dir}"])
    assert f"resumed from {run_dir / 'iter_0000004'} at step 4" in result.stdout
    assert not (run_dir / "iter_0000005.partial").exists()
    assert_same_losses(run_dir, reference_dir, steps=[1, 2, 3, 4, 5], tolerance=0.0)
    assert metrics(run_dir)[5]["loss"] == metrics(reference_dir)[5]["loss"]
    got = checkpoint_tensors(run_dir / "iter_0000005", tmp_path)
    want = checkpoint_tensors(reference_dir / "iter_0000005", tmp_path / "..")
    assert got.keys() == want.keys()
    for key in want:  # model and optimizer state, bit for bit
        assert torch.equal(got[key], want[key]), key


@pytest.mark.slow
def test_sigusr1_checkpoints_and_exits_cleanly(reference, tmp_path):
    config, _ = reference
    run_dir = tmp_path / "signalled"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [*TRAIN, str(config), f"--set=checkpoint.dir={run_dir}", "--set=train_steps=400", "--set=checkpoint.interval=0"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    output = []
    for line in process.stdout:
        output.append(line)
        if line.startswith("step      2/400"):
            process.send_signal(signal.SIGUSR1)
    assert process.wait(timeout=60) == 0, "".join(output)[-3000:]
    stopped = [line for line in output if line.startswith("stopping at step")]
    assert stopped and "SIGUSR1" in stopped[0]
    step = int(stopped[0].split()[3].rstrip(":"))
    assert 2 <= step < 400
    assert (run_dir / "latest").read_text().strip() == f"iter_{step:07d}"
    assert (run_dir / f"iter_{step:07d}" / "metadata.json").is_file()


@pytest.mark.slow
def test_staged_training_moves_only_the_allowed_parameters(reference, tmp_path):
    """Stage 1: embeddings + LM head, new rows only (ids >= 31000); stage 2: everything."""
    _, reference_dir = reference
    run_dir = tmp_path / "staged"
    config = tiny_config(
        tmp_path / "staged.yaml", tokenized_corpus_dir(reference_dir), run_dir,
        train_steps=None,
        init={"megatron_checkpoint": str(reference_dir / "iter_0000002")},
        stages=[
            {"name": "new-rows", "steps": 2, "trainable": "embeddings", "new_rows_only": True, "lr": 0.05},
            {"name": "full", "steps": 1, "trainable": "all", "warmup_steps": 0},
        ],
        checkpoint={"dir": str(run_dir), "interval": 0, "keep_last": 5},
    )
    result = run([*TRAIN, str(config)])
    assert "stage 1 'full'" in result.stdout
    before = checkpoint_tensors(reference_dir / "iter_0000002", tmp_path)
    stage1 = checkpoint_tensors(run_dir / "iter_0000002", tmp_path / "s1")
    stage2 = checkpoint_tensors(run_dir / "iter_0000003", tmp_path / "s2")
    for name in ("embedding.word_embeddings.weight", "output_layer.weight"):
        assert torch.equal(stage1[name][:31000], before[name][:31000]), name  # old rows bit-identical
        assert not torch.equal(stage1[name][31000:], before[name][31000:]), name  # new rows trained
    assert not torch.equal(stage1["output_layer.weight"], stage2["output_layer.weight"])
    for name, value in before.items():
        if name.startswith("decoder."):
            assert torch.equal(stage1[name], value), name  # frozen in stage 1
            assert not torch.equal(stage2[name], value), name  # trained in stage 2
    assert not any(k.startswith("optimizer.") and "decoder" in k for k in stage1)  # stage-1 optimizer


def tokenized_corpus_dir(reference_dir: Path) -> Path:
    import yaml

    config = yaml.safe_load((reference_dir.parent / "config.yaml").read_text())
    return Path(config["pretrain"]["data"]["blend"][0]["path"])


@pytest.mark.slow
def test_bad_config_under_torchrun_fails_before_any_process_group(reference, tmp_path):
    config, _ = reference
    started = time.time()
    result = subprocess.run([*torchrun(2), str(config), "--set=parallel.tensor=3",
                             f"--set=checkpoint.dir={tmp_path / 'run'}"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "train.py: error:" in line]
    assert len(errors) == 1 and "world size 2 is not divisible by tensor × pipeline = 3 × 1" in errors[0]
    assert "Traceback" not in result.stderr.split("train.py: error:")[0]
    assert time.time() - started < 60


@pytest.mark.slow
def test_non_finite_loss_is_skipped_then_stops_the_run(reference, tmp_path):
    config, _ = reference
    result = subprocess.run(
        [*TRAIN, str(config), f"--set=checkpoint.dir={tmp_path / 'nan'}", "--set=optimizer.lr=1e30",
         "--set=optimizer.min_lr=0", "--set=max_nan_skips=1", "--set=checkpoint.interval=0"],
        cwd=REPO, capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 3, result.stdout[-3000:] + result.stderr[-3000:]
    assert "update skipped (1/1 skips allowed)" in result.stdout
    assert "error: stopping at step" in result.stdout and "non-finite loss/gradients" in result.stdout


@pytest.mark.slow
def test_hf_and_converted_checkpoint_inits_give_the_same_first_loss(reference, tmp_path):
    """init: {hf: DIR} and init: {megatron_checkpoint: convert(DIR)} start from the same weights."""
    from checkpoints.convert import hf_to_megatron
    from checkpoints.tiny_llama import tiny_llama_config, write_tiny_llama

    config, _ = reference
    hf = write_tiny_llama(tmp_path / "hf", tiny_llama_config(vocab_size=32000, intermediate_size=172,
                                                             num_key_value_heads=2))
    hf_to_megatron(hf, tmp_path / "megatron")
    losses = {}
    for kind, path in (("hf", hf), ("megatron_checkpoint", tmp_path / "megatron")):
        run_dir = tmp_path / f"run-{kind}"
        result = run([*TRAIN, str(config), f"--set=init={{{kind}: {path}}}", f"--set=checkpoint.dir={run_dir}",
                      "--set=train_steps=2", "--set=checkpoint.interval=0"])
        assert f"init={kind}:{path}" in result.stdout
        losses[kind] = [metrics(run_dir)[step]["loss"] for step in (1, 2)]
    assert losses["hf"] == pytest.approx(losses["megatron_checkpoint"], abs=1e-6)
    assert losses["hf"][0] < 11.0  # a trained-from-scratch-random HF model on real text, not NaN


@pytest.mark.slow
def test_resuming_with_another_schedule_is_refused_until_told_which_wins(reference, tmp_path):
    """Megatron-core keeps a checkpoint's lr schedule by default, so a longer run or a new lr was
    silently ignored; now it is refused, and checkpoint.resume_schedule picks the checkpoint's or the config's."""
    config, reference_dir = reference
    sets = [f"--set=checkpoint.load={reference_dir / 'iter_0000002'}", "--set=train_steps=8", "--set=optimizer.lr=2e-3"]
    refused = subprocess.run([*TRAIN, str(config), f"--set=checkpoint.dir={tmp_path / 'refused'}", *sets],
                             cwd=REPO, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-2000:]
    error = [line for line in refused.stderr.splitlines() if "error:" in line]
    assert len(error) == 1 and "lr 0.001 -> 0.002, steps 5 -> 8" in error[0] and "resume_schedule=config" in error[0]
    assert not (tmp_path / "refused" / "metrics.jsonl").exists()

    want = metrics(reference_dir)
    kept, taken = tmp_path / "checkpoint", tmp_path / "config"
    run([*TRAIN, str(config), f"--set=checkpoint.dir={kept}", *sets, "--set=checkpoint.resume_schedule=checkpoint",
         "--set=train_steps=5"])
    assert [metrics(kept)[s]["lr"] for s in (3, 4, 5)] == pytest.approx([want[s]["lr"] for s in (3, 4, 5)], rel=1e-9)
    run([*TRAIN, str(config), f"--set=checkpoint.dir={taken}", *sets, "--set=checkpoint.resume_schedule=config"])
    got = metrics(taken)
    assert sorted(got) == [3, 4, 5, 6, 7, 8]
    # this config's cosine from 2e-3 over 8 steps (1 warmup), continued at step 3; the checkpoint's was 1e-3 over 5
    assert got[3]["lr"] > 1.5 * want[3]["lr"] and got[8]["lr"] == pytest.approx(1e-4, rel=1e-6)
