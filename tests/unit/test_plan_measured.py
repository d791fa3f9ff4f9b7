"""`kocpt plan` says where its MFU comes from: assumed, given, or measured by benchmarks/gpu.py."""

from __future__ import annotations

import json

import pytest

from pretrain import plan
from stagekit.paths import REPO

CONFIG = str(REPO / "configs" / "llama2-7b.yaml")


def gpu_report(path, rows, device_type="cuda"):
    """A benchmarks/gpu.py result file (the fields plan reads, as gpu.py writes them)."""
    device = {"type": device_type, "name": "NVIDIA H200", "model": "H200", "memory_gib": 139.8, "peak_bf16_tflops": 989.0}
    if device_type == "cpu":
        device = {"type": "cpu", "name": "x86_64", "model": None, "memory_gib": None, "peak_bf16_tflops": None}
    path.write_text(json.dumps({"schema": 1, "device": device, "throughput": rows}))
    return str(path)


def row(size, hidden, mbs, recompute, mfu, status="ok"):
    return {"size": size, "hidden_size": hidden, "layers": 32, "full_layers": 32, "recompute": recompute,
            "micro_batch_size": mbs, "seq_length": 4096, "status": status, "mfu": mfu, "tokens_per_s": 1.0}


@pytest.fixture(autouse=True)
def no_repo_measurement(monkeypatch, tmp_path):
    monkeypatch.setattr(plan, "DEFAULT_MEASUREMENT", tmp_path / "absent" / "gpu.json")


def run_plan(capsys, *args):
    code = plan.main([CONFIG, *args], prog="kocpt plan")
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_without_a_measurement_the_mfu_is_assumed(tmp_path, capsys):
    code, out, _ = run_plan(capsys, "--json", str(tmp_path / "p.json"))
    assert code == 0 and "throughput at MFU 0.45 (assumed) of 312 TFLOP/s peak" in out
    throughput = json.loads((tmp_path / "p.json").read_text())["throughput"]
    assert throughput["mfu_origin"] == "assumed" and throughput["mfu_measurement"] is None


def test_a_cpu_only_benchmark_is_not_a_measurement(tmp_path, capsys):
    measured = gpu_report(tmp_path / "gpu.json", [], device_type="cpu")
    code, out, _ = run_plan(capsys, "--measured", measured)
    assert code == 0 and f"MFU 0.45 (assumed; {measured} has no GPU measurement (CPU half only))" in out


def test_a_gpu_measurement_is_used_and_scaled_to_the_configured_gpu(tmp_path, capsys):
    rows = [row("1b", 2048, 2, False, 0.61), row("7b", 4096, 1, True, 0.50), row("7b", 4096, 2, True, 0.52),
            row("7b", 4096, 4, True, 0.53), row("7b", 4096, 1, False, 0.57), row("7b", 4096, 2, False, None, "out of memory")]
    measured = gpu_report(tmp_path / "gpu.json", rows)
    out_json = tmp_path / "p.json"
    # The 7B recipe: micro batch 1 without recomputation -> that 7B row.
    code, out, _ = run_plan(capsys, "--measured", measured, "--json", str(out_json))
    assert code == 0 and "MFU 0.57 (measured on H200, micro-batch 1) of 312 TFLOP/s peak" in out
    measured_plan = json.loads(out_json.read_text())["throughput"]
    assert measured_plan["mfu_measurement"]["gpu"] == "H200"
    code, _, _ = run_plan(capsys, "--mfu", "0.45", "--json", str(out_json))
    assumed_plan = json.loads(out_json.read_text())["throughput"]
    # Measured on an H200 (989 TFLOP/s), planned for A100s (312): the MFU carries over, so tokens/s
    # are the A100's peak times the measured MFU.
    assert measured_plan["tokens_per_s_per_gpu"] / assumed_plan["tokens_per_s_per_gpu"] == pytest.approx(0.57 / 0.45)
    # With recomputation, the recomputed rows; the nearest micro batch among them.
    _, out, _ = run_plan(capsys, "--measured", measured, "--set=micro_batch_size=2", "--set=recompute_activations=true")
    assert "MFU 0.52 (measured on H200, micro-batch 2)" in out
    # Without recomputation micro batch 2 ran out of memory on the GPU: the nearest that ran.
    _, out, _ = run_plan(capsys, "--measured", measured, "--set=micro_batch_size=2")
    assert "MFU 0.57 (measured on H200, micro-batch 1)" in out


def test_the_default_measurement_file_is_read(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(plan, "DEFAULT_MEASUREMENT", tmp_path / "gpu.json")
    gpu_report(tmp_path / "gpu.json", [row("7b", 4096, 1, False, 0.48)])
    _, out, _ = run_plan(capsys)
    assert "MFU 0.48 (measured on H200, micro-batch 1)" in out


@pytest.mark.parametrize("args, message", [
    (["--measured", "nowhere.json"], "--measured nowhere.json: no such file"),
    (["--mfu", "0.5", "--measured", CONFIG], "--mfu and --measured: give one"),
    (["--mfu", "1.5"], "--mfu must be in (0, 1], got 1.5"),
])
def test_bad_mfu_options_are_one_line_errors(capsys, args, message):
    code, _, err = run_plan(capsys, *args)
    assert code == 2 and message in err and err.count("\n") == 1


def test_the_korean_inference_cost_comes_from_the_merge_report(tmp_path, capsys):
    tokenizer = tmp_path / "tokenizer"
    tokenizer.mkdir()
    _, out, _ = run_plan(capsys, f"--set=tokenizer={tokenizer}")
    assert "Korean     inference cost per character unknown: no merge report at" in out
    report = {"vocab": {"base_size": 32000, "size": 46000},
              "korean": {"ko.txt": {"base": {"tokens_per_char": 1.5}, "merged": {"tokens_per_char": 0.6}}}}
    (tokenizer / "report.json").write_text(json.dumps(report))
    code, out, _ = run_plan(capsys, f"--set=tokenizer={tokenizer}", "--json", str(tmp_path / "p.json"))
    cost = json.loads((tmp_path / "p.json").read_text())["korean_inference"]
    from mcore_llama.shape import LlamaShape
    from pretrain.flops import flops_per_token

    shape = LlamaShape(46000, 4096, 11008, 32, 32, 32)  # configs/llama2-7b.yaml's model: section
    expected = 0.6 * flops_per_token(shape, 4096, 46000) / (1.5 * flops_per_token(shape, 4096, 32000))
    assert code == 0 and cost["ratio"] == pytest.approx(expected) and 0.4 < cost["ratio"] < 0.45
    assert f"0.600 tokens/char (the base tokenizer: 1.500) -> {expected:.2f}x" in out
