"""Prove the CUDA training path and measure it: one command for a GPU node (air-gapped is fine).

    python -m benchmarks.gpu [--output benchmarks/results/gpu.json] [--cpu-only]

CPU half (any machine; CI runs it): the tiny Llama, 5 optimizer steps in fp32 on CPU through the
training stage's own code (build_stage / train_step), with a dist checkpoint after step 2 that a
fresh stage reloads: steps 3-5 must repeat bit for bit (losses and weights).
GPU half (needs CUDA):
  - the same tiny Llama, weights and batches on the GPU in fp32 (local spec, TF32 off): every
    loss within 1e-5 of the CPU's; then bf16 parameters with fp32 main gradients, the
    distributed optimizer and the TE spec (when TransformerEngine imports): within the bf16
    tolerance below; both with the checkpoint-and-resume check from GPU memory;
  - tokens/s and MFU (FLOPs per token as `kocpt plan` counts them, pretrain/flops.py) for a ~1.1B
    Llama and for Llama-2-7B's layer shapes at sequence length 4096, micro-batch 1/2/4, with and
    without activation recomputation; depth is cut (and the JSON says so) where the weights,
    fp32 gradients and optimizer states (18 bytes/parameter) would not fit.
Writes the JSON (tmp + rename) and prints a table. Installs nothing: a missing package is named
in one line (`bash benchmarks/gpu_wheels.sh DIR` fetches the wheels for an offline node).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from benchmarks.result_file import write_result

HERE = Path(__file__).resolve().parent

DEFAULT_OUTPUT = HERE / "results" / "gpu.json"
GIB = 1024**3
FP32_TOLERANCE = 1e-5  # absolute, per loss: same math, different kernels (GPU fp32 vs CPU fp32)
# bf16 tolerance, relative to the fp32 loss: bf16 keeps 8 significant bits, a unit roundoff of
# u = 2^-8 = 0.39%. The weights the forward pass sees are bf16 copies of the fp32 main weights
# (each off by <= u/2), activations are rounded to bf16 between kernels while matmuls accumulate
# in fp32 and RMSNorm, softmax and the cross entropy run in fp32; the loss, a mean over all
# tokens, is off by a small multiple of u at step 1. The Adam updates that follow are computed in
# fp32 from gradients that differ at the same order, and Adam's normalized step moves each
# weight by ~lr either way, so the gap grows by about that much per step. 1% (~2.5 u) covers that
# for 5 steps; a broken mixed-precision path (gradients not reaching the fp32 main weights, a
# lost loss scale, micro-batches not averaged) is off by the training progress itself, which the
# CPU run checks to be > 5x this tolerance in its 5 steps.
BF16_RELATIVE_TOLERANCE = 1e-2


def missing_dependency() -> str | None:
    """One line naming what is not importable (the GPU node lacks megatron-core by default)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return "torch is not importable"
    try:
        with warnings.catch_warnings():  # "Apex is not installed" and the like: not news here
            warnings.simplefilter("ignore")
            import megatron.core  # noqa: F401
    except ImportError as exc:
        return (f"megatron-core is not importable ({exc}); offline: bash benchmarks/gpu_wheels.sh WHEELS, "
                "then pip install --no-index --find-links WHEELS megatron-core packaging")
    return None


def versions() -> dict:
    found = {"python": platform.python_version()}
    for package in ("torch", "megatron-core", "transformer-engine", "packaging"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def run_worker(task: dict, work_dir: Path, name: str, cpu: bool) -> dict:
    """Run one part in its own process; its result, or {"error": last line of its output}."""
    result_file = work_dir / f"{name}.json"
    log_file = work_dir / f"{name}.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")]))}
    # Deterministic kernels, so a resumed run can repeat an uninterrupted one bit for bit.
    env.update(CUBLAS_WORKSPACE_CONFIG=":4096:8", NVTE_ALLOW_NONDETERMINISTIC_ALGO="0")
    if cpu:
        env.update(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "2"))
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)  # a fresh one-process group per worker
    started = time.perf_counter()
    with open(log_file, "w") as log:
        code = subprocess.call([sys.executable, "-m", "benchmarks.gpu_worker", json.dumps(task), str(result_file)],
                               stdout=log, stderr=subprocess.STDOUT, env=env, cwd=HERE.parent)
    elapsed = time.perf_counter() - started
    if code != 0 or not result_file.is_file():
        lines = [line for line in log_file.read_text(errors="replace").splitlines() if line.strip()]
        error = next((line for line in reversed(lines) if "Error" in line or "error" in line), lines[-1] if lines else "")
        return {"error": f"exit code {code}: {error.strip()[:300]}", "seconds": elapsed}
    return {**json.loads(result_file.read_text()), "seconds": elapsed}


def _shapes():
    from benchmarks.gpu_worker import SHAPES

    return SHAPES


def fitting_layers(size: str, memory_gib: float, seq: int, recompute: bool, flash: bool) -> int:
    """Most layers (<= full depth) whose bf16 weights, fp32 grads, fp32 master + Adam (18 B/param:
    distributed optimizer at DP=1), micro-batch-1 activations and fp32 logits fit in 90% of memory
    (the same accounting as `kocpt plan`)."""
    from mcore_llama.shape import padded_vocab_size
    from pretrain.flops import parameter_counts
    from pretrain.plan import activation_bytes_per_layer

    full = _shapes()[size]
    padded = padded_vocab_size(full.vocab_size, 1)
    for layers in range(full.num_hidden_layers, 0, -1):
        shape = replace(full, num_hidden_layers=layers)
        params = parameter_counts(shape, padded)["total"]
        activations = layers * activation_bytes_per_layer(shape, seq, 1, 1, flash, recompute)
        total = 18 * params + activations + 3 * 4 * seq * padded + 3 * GIB
        if total <= 0.9 * memory_gib * GIB:
            return layers
    return 1


def check(name: str, passed: bool, detail: str) -> dict:
    return {"name": name, "passed": bool(passed), "detail": detail}


def correctness_checks(cpu: dict, gpu: dict | None) -> list[dict]:
    checks = []
    if "error" in cpu:
        return [check("CPU fp32 run", False, cpu["error"])]
    reference = cpu["runs"]["fp32"]
    losses = reference["losses"]
    progress = losses[0] - min(losses)
    checks.append(check("CPU fp32: the loss falls", progress > 5 * BF16_RELATIVE_TOLERANCE * losses[0],
                        f"{losses[0]:.4f} -> {min(losses):.4f} in 5 steps (needs > 5x the bf16 tolerance)"))
    checks.append(check("CPU fp32: checkpoint, reload, 3 steps bit-identical", reference["resume"]["bit_identical"],
                        f"losses {reference['resume']['resumed_losses']}"))
    if gpu is None:
        return checks
    if "error" in gpu:
        return checks + [check("GPU correctness runs", False, gpu["error"])]
    fp32, bf16 = gpu["runs"]["fp32"], gpu["runs"]["bf16"]
    fp32_gap = max(abs(a - b) for a, b in zip(fp32["losses"], losses))
    checks.append(check("GPU fp32 vs CPU fp32: losses within 1e-5", fp32_gap <= FP32_TOLERANCE, f"max gap {fp32_gap:.2e}"))
    bf16_gap = max(abs(a - b) / b for a, b in zip(bf16["losses"], losses))
    checks.append(check(f"GPU bf16 ({bf16['spec']} spec, distributed optimizer) vs CPU fp32: within "
                        f"{BF16_RELATIVE_TOLERANCE:.0%}", bf16_gap <= BF16_RELATIVE_TOLERANCE, f"max relative gap {bf16_gap:.2e}"))
    for label, run in (("fp32", fp32), ("bf16", bf16)):
        checks.append(check(f"GPU {label}: checkpoint from GPU memory, reload, 3 steps bit-identical",
                            run["resume"]["bit_identical"], f"losses {run['resume']['resumed_losses']}"))
    return checks


def gpu_half(args, work_dir: Path, device: dict) -> list[dict]:
    """Throughput rows: one worker per (size, recomputation), each sweeping the micro-batch sizes."""
    from mcore_llama.build import uses_transformer_engine

    flash = uses_transformer_engine()  # TE's fused attention keeps no s x s scores
    rows = []
    for size in args.sizes:
        for recompute in (False, True):
            full = _shapes()[size].num_hidden_layers
            layers = fitting_layers(size, device["memory_gib"], args.seq_length, recompute, flash)
            task = {"kind": "throughput", "size": size, "layers": layers, "full_layers": full,
                    "recompute": recompute, "seq_length": args.seq_length, "micro_batch_sizes": args.micro_batches,
                    "tokens_per_step": args.tokens_per_step, "warmup_steps": args.warmup_steps,
                    "timed_steps": args.timed_steps, "peak_tflops": device["peak_bf16_tflops"]}
            for attempt in range(3):  # the estimate can be a little optimistic: cut depth by 1/4
                label = f"{size} {'recompute' if recompute else 'no recompute'} ({task['layers']}/{full} layers)"
                print(f"throughput: {label} ...", flush=True)
                result = run_worker(task, work_dir, f"throughput-{size}-{int(recompute)}-{attempt}", cpu=False)
                nothing_ran = "rows" in result and all(row["status"] != "ok" for row in result["rows"])
                if not (nothing_ran and result["rows"][0]["status"] == "out of memory" and task["layers"] > 1):
                    break
                task = {**task, "layers": max(1, task["layers"] * 3 // 4)}
            layers = task["layers"]
            if "error" in result:
                rows.append({"size": size, "layers": layers, "full_layers": full, "recompute": recompute,
                             "status": f"error: {result['error']}"})
            else:
                rows.extend(result["rows"])
            print(f"throughput: {label} done in {result['seconds']:.0f}s", flush=True)
    return rows


def table(result: dict) -> str:
    lines = [f"device: {result['device']['name']}  ({result['gpu_half']})",
             f"versions: {', '.join(f'{k} {v}' for k, v in result['versions'].items())}"]
    for item in result["checks"]:
        lines.append(f"  [{'ok' if item['passed'] else 'FAIL'}] {item['name']}: {item['detail']}")
    if result["throughput"]:
        lines.append(f"{'size':>4} {'layers':>6} {'recomp':>6} {'mbs':>3} {'spec':>17} {'tokens/s':>9} {'MFU':>6} "
                     f"{'s/step':>7} {'GiB':>6}  status")
        for row in result["throughput"]:
            ok = row.get("status") == "ok"
            mfu = f"{row['mfu']:.3f}" if ok and row.get("mfu") is not None else "-"
            lines.append(
                f"{row['size']:>4} {row['layers']:>3}/{row['full_layers']:<2} {'yes' if row['recompute'] else 'no':>6} "
                f"{row.get('micro_batch_size', '-'):>3} {row.get('spec', '-'):>17} "
                f"{(format(row['tokens_per_s'], ',.0f') if ok else '-'):>9} {mfu:>6} "
                f"{(format(row['step_time_s'], '.2f') if ok else '-'):>7} "
                f"{(format(row['peak_memory_gib'], '.1f') if ok else '-'):>6}  {row['status']}")
    return "\n".join(lines)


def csv_ints(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"JSON result (default {DEFAULT_OUTPUT})")
    parser.add_argument("--cpu-only", action="store_true", help="run the CPU half only, even where CUDA is present")
    parser.add_argument("--sizes", default="1b,7b", help="throughput shapes, from 1b,7b (default both)")
    parser.add_argument("--micro-batches", type=csv_ints, default=[1, 2, 4], help="micro-batch sizes (default 1,2,4)")
    parser.add_argument("--seq-length", type=positive_int, default=4096)
    parser.add_argument("--tokens-per-step", type=positive_int, default=32768,
                        help="tokens per optimizer step (micro batches = this / (micro batch x seq))")
    parser.add_argument("--warmup-steps", type=positive_int, default=2)
    parser.add_argument("--timed-steps", type=positive_int, default=3)
    parser.add_argument("--peak-tflops", type=float, help="peak dense bf16 TFLOP/s of this GPU (default: from its name)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in args.sizes if s not in ("1b", "7b")]
    if unknown or not args.sizes:
        parser.error(f"--sizes: unknown size(s) {', '.join(unknown) or '(none)'}; choose from 1b,7b")
    missing = missing_dependency()
    if missing:
        print(f"gpu.py: error: {missing}", file=sys.stderr)
        return 2
    import torch

    from pretrain.flops import gpu_model_name, peak_bf16_tflops

    on_gpu = torch.cuda.is_available() and not args.cpu_only
    if on_gpu:
        props = torch.cuda.get_device_properties(0)
        device = {"type": "cuda", "name": props.name, "model": gpu_model_name(props.name),
                  "memory_gib": props.total_memory / GIB,
                  "peak_bf16_tflops": args.peak_tflops or peak_bf16_tflops(props.name)}
        half = "CPU and GPU halves"
    else:
        device = {"type": "cpu", "name": platform.processor() or platform.machine(), "model": None,
                  "memory_gib": None, "peak_bf16_tflops": None}
        half = "CPU half only: " + ("--cpu-only" if args.cpu_only else "the GPU half needs CUDA (torch.cuda.is_available() is False)")
    print(f"gpu.py: {half}", flush=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kocpt-gpu-bench-") as tmp:
        work_dir = Path(tmp)
        task = {"kind": "correctness", "init_dir": str(work_dir / "init"), "work_dir": str(work_dir)}
        print("correctness: tiny Llama on CPU, fp32 ...", flush=True)
        cpu = run_worker(task, work_dir, "correctness-cpu", cpu=True)
        gpu = rows = None
        if on_gpu:
            print("correctness: tiny Llama on the GPU, fp32 and bf16 ...", flush=True)
            gpu = run_worker(task, work_dir, "correctness-gpu", cpu=False)
            rows = gpu_half(args, work_dir, device)
    result = {
        "schema": 1, "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": platform.node(), "versions": versions(), "device": device, "gpu_half": half,
        "tolerances": {"fp32_absolute": FP32_TOLERANCE, "bf16_relative": BF16_RELATIVE_TOLERANCE},
        "correctness": {"cpu": cpu, "gpu": gpu},
        "checks": correctness_checks(cpu, gpu),
        "throughput": rows or [],
        "seconds": time.perf_counter() - started,
    }
    write_result(args.output, result)
    print(table(result))
    print(f"wrote {args.output} ({result['seconds']:.0f}s)")
    failed = [item["name"] for item in result["checks"] if not item["passed"]]
    errors = [row for row in result["throughput"] if row["status"].startswith("error")]
    if failed or errors:
        print(f"gpu.py: error: {len(failed)} check(s) failed, {len(errors)} throughput run(s) crashed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
