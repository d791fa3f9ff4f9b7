"""`kocpt plan CONFIG`: parameters, memory per GPU and expected throughput, before queueing.

    kocpt plan configs/llama2-7b.yaml [--nodes 4] [--gpus-per-node 8] [--mfu 0.45 | --measured FILE] [--json FILE]

Memory per GPU follows Megatron's mixed-precision accounting: bf16 weights (2 B/param), fp32
gradient buffer (4 B/param, grad_reduce_in_fp32), and fp32 master weights + Adam moments
(12 B/param) sharded over data parallel by the distributed optimizer. Activations follow
Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer Models") for a
Llama layer (SwiGLU MLP, GQA, no dropout, no sequence parallel), with flash attention on GPUs (no
s² score tensor), on the first pipeline stage (which holds `pipeline` micro batches in flight
under 1F1B), plus the fp32 logits of the LM head. Step time = FLOPs / (GPUs × peak × MFU).

Where the MFU comes from, in this order: `--mfu`; a GPU measurement by `benchmarks/gpu.py`
(`--measured FILE`, else `benchmarks/results/gpu.json` when it exists): its row closest to this
model (hidden size), recomputation setting and micro-batch size. MFU carries over from the
measured GPU to the configured one, i.e. tokens/s scale by their peak bf16 TFLOP/s. Otherwise
`cluster.assumed_mfu` (0.45). The output says which: "MFU 0.45 (assumed)" or "MFU 0.52 (measured
on H200, micro-batch 2)". A CPU-only run of gpu.py measures nothing and is not used.

The anchor: Meta trained Llama-2-7B on 2T tokens in 184,320 A100-hours, i.e. about 3,014 tokens/s
per GPU, which is ~45% MFU at sequence length 4096 by the same FLOP count.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from mcore_llama.run_dir import is_checkpoint
from pretrain.config import ConfigError, RunConfig, init_source, load_config, resolve_stages
from pretrain.resolve import model_source
from pretrain.flops import flops_per_token, parameter_counts
from mcore_llama.shape import LlamaShape, padded_vocab_size
from stagekit.config import config_file, load_section

GIB = 1024**3
DEFAULT_MEASUREMENT = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "gpu.json"
META_LLAMA2_7B_TOKENS_PER_GPU_S = 2.0e12 / (184_320 * 3600)  # 3,014: Llama-2 paper, table 2


@dataclass
class Cluster:
    """The `cluster:` section (YAML, `--set cluster.KEY=VALUE`, or --nodes/--gpus-per-node/--gpu-memory-gib);
    `validate()` refuses a count below 1 or a non-positive size whichever way the value came
    (the shared loader runs it)."""

    nodes: int = 1
    gpus_per_node: int = 8
    gpu_memory_gib: float = 80.0
    assumed_mfu: float = 0.45  # what well-tuned Megatron-Core reaches on A100 for 7B (and Meta's)

    def validate(self) -> None:
        for name in ("nodes", "gpus_per_node"):
            value = getattr(self, name)
            if value < 1:
                raise ConfigError(f"cluster.{name} (--{name.replace('_', '-')}) must be an integer >= 1, got {value}")
        if not (math.isfinite(self.gpu_memory_gib) and self.gpu_memory_gib > 0):
            raise ConfigError(f"cluster.gpu_memory_gib (--gpu-memory-gib) must be a number of GiB > 0, "
                              f"got {self.gpu_memory_gib}")
        if not 0 < self.assumed_mfu <= 1:  # NaN fails this too
            raise ConfigError(f"cluster.assumed_mfu must be in (0, 1], got {self.assumed_mfu}")


@dataclass
class MfuSource:
    """The MFU the plan uses and where it comes from (printed with it)."""

    mfu: float
    origin: str  # "assumed" | "given" | "measured"
    note: str = ""  # e.g. "measured on H200, micro-batch 2"
    measurement: dict | None = None  # the benchmark row used

    def label(self) -> str:
        return f"MFU {self.mfu:.2f} ({self.note or self.origin})"


def measured_mfu(path: Path, shape: LlamaShape, micro_batch_size: int, recompute: bool) -> MfuSource | str:
    """The GPU measurement closest to this run in a `benchmarks/gpu.py` JSON, or why there is none."""
    try:
        report = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--measured {path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    device = report.get("device") or {}
    rows = [row for row in report.get("throughput") or []
            if row.get("status") == "ok" and isinstance(row.get("mfu"), (int, float)) and row["mfu"] > 0]
    if device.get("type") != "cuda" or not rows:
        return f"{path} has no GPU measurement (CPU half only)" if device.get("type") != "cuda" \
            else f"{path} has no successful GPU measurement with a known peak"

    def distance(row):  # same width first, then the same recomputation, then the nearest micro batch
        return (abs(row.get("hidden_size", 0) - shape.hidden_size), row.get("recompute") != recompute,
                abs(row["micro_batch_size"] - micro_batch_size), row["micro_batch_size"])

    row = min(rows, key=distance)
    gpu = device.get("model") or device.get("name", "a GPU")
    return MfuSource(mfu=float(row["mfu"]), origin="measured", measurement={**row, "file": str(path), "gpu": gpu},
                     note=f"measured on {gpu}, micro-batch {row['micro_batch_size']}")


def mfu_source(cluster: Cluster, given: float | None, measured: str | None, shape: LlamaShape,
               micro_batch_size: int, recompute: bool) -> MfuSource:
    if given is not None:
        return MfuSource(mfu=given, origin="given", note="given with --mfu")
    if measured is not None and not Path(measured).is_file():
        raise ConfigError(f"--measured {measured}: no such file")
    path = Path(measured) if measured is not None else DEFAULT_MEASUREMENT
    if path.is_file():
        found = measured_mfu(path, shape, micro_batch_size, recompute)
        if isinstance(found, MfuSource):
            return found
        return MfuSource(mfu=cluster.assumed_mfu, origin="assumed", note=f"assumed; {found}")
    return MfuSource(mfu=cluster.assumed_mfu, origin="assumed")


def model_shape(run: RunConfig) -> LlamaShape:
    """As training takes it (`pretrain.resolve.model_source`): the init HF config or Megatron checkpoint
    when it is on disk, else the `model:` section (+ its vocab_size, or the tokenizer's)."""
    kind, path = init_source(run.pretrain)
    on_disk = kind == "hf" and path and (Path(path) / "config.json").is_file() or (
        kind == "megatron_checkpoint" and path and is_checkpoint(path))
    if not on_disk:  # planning ahead of the artifacts: the `model:` section stands for them
        kind, path = "random", None

    def vocab() -> int:
        if run.model.vocab_size is not None:
            return run.model.vocab_size
        try:
            from tokenizer.token_encoder import TokenEncoder

            return TokenEncoder.load(run.pretrain.tokenizer).vocab_size
        except ValueError:
            raise ConfigError("model.vocab_size: needed when the tokenizer is not on this machine") from None

    return model_source(run, kind, path, vocab)[0]


def activation_bytes_per_layer(shape: LlamaShape, seq: int, micro_batch: int, tp: int,
                               flash_attention: bool, recompute: bool) -> float:
    """bf16 activations one layer keeps for backward (per micro batch)."""
    s, b, h, f = seq, micro_batch, shape.hidden_size, shape.intermediate_size
    kv = shape.num_key_value_heads * shape.head_dim
    a = shape.num_attention_heads
    if recompute:  # full recomputation keeps only each layer's input
        return 2 * s * b * h
    replicated = 2 * s * b * h * 2  # inputs of the two RMSNorms (not split without sequence parallel)
    split = (
        2 * s * b * h  # QKV projection input
        + 2 * s * b * (h + 2 * kv)  # Q, K, V
        + 2 * s * b * h  # attention output (input of the output projection)
        + 2 * s * b * h  # fc1 input
        + 2 * s * b * 2 * f  # gate and up
        + 2 * s * b * f  # SiLU(gate) * up (fc2 input)
    )
    if not flash_attention:
        split += 2 * 2 * a * s * s * b  # scores and softmax
    else:
        split += 4 * a * s * b  # fp32 log-sum-exp per row
    return replicated + split / tp


def korean_inference_cost(run: RunConfig, shape: LlamaShape) -> dict:
    """What the expansion saves at inference: Korean tokens per character of the merged and the base tokenizer
    (the merge's report.json beside the tokenizer, measured on its --eval-korean text) and this model's forward
    FLOPs per Korean character against the same model on the base vocabulary."""
    report_path = Path(run.pretrain.tokenizer) / "report.json"
    if not report_path.is_file():
        return {"known": False, "why": f"no merge report at {report_path}"}
    report = json.loads(report_path.read_text())
    figures = next(iter((report.get("korean") or {}).values()), None)
    if not figures:
        return {"known": False, "why": f"{report_path} has no Korean figures (merge with --eval-korean FILE)"}
    base_rows = (report.get("vocab") or {}).get("base_size") or shape.vocab_size
    seq = run.pretrain.seq_length
    forward = flops_per_token(shape, seq, shape.vocab_size) / 3  # 2 of the 6 FLOPs per parameter
    base_forward = flops_per_token(shape, seq, base_rows) / 3
    merged_tpc, base_tpc = figures["merged"]["tokens_per_char"], figures["base"]["tokens_per_char"]
    return {"known": True, "report": str(report_path), "tokens_per_char": merged_tpc, "base_tokens_per_char": base_tpc,
            "forward_flops_per_char": forward * merged_tpc, "base_forward_flops_per_char": base_forward * base_tpc,
            "ratio": forward * merged_tpc / (base_forward * base_tpc)}


def plan(run: RunConfig, cluster: Cluster, mfu_given: float | None = None, measured: str | None = None) -> dict:
    config = run.pretrain
    shape = model_shape(run)
    source = mfu_source(cluster, mfu_given, measured, shape, config.micro_batch_size, config.recompute_activations)
    tp, pp = config.parallel.tensor, config.parallel.pipeline
    gpus = cluster.nodes * cluster.gpus_per_node
    if gpus % (tp * pp):
        raise ConfigError(f"{gpus} GPUs are not divisible by tensor × pipeline = {tp} × {pp}")
    dp = gpus // (tp * pp)
    if config.global_batch_size % (config.micro_batch_size * dp):
        raise ConfigError(f"global_batch_size {config.global_batch_size} is not divisible by "
                          f"micro_batch_size × data_parallel = {config.micro_batch_size} × {dp}")
    padded = padded_vocab_size(shape.vocab_size, tp, config.make_vocab_size_divisible_by)
    counts = parameter_counts(shape, padded)
    seq, mbs = config.seq_length, config.micro_batch_size
    microbatches = config.global_batch_size // (mbs * dp)

    # The heaviest pipeline stage: the first (embedding + its layers) or last (layers + LM head).
    layers_per_stage = shape.num_hidden_layers // pp
    stage_layers = counts["per_layer"] * layers_per_stage
    stage_params = max(stage_layers + counts["embedding"], stage_layers + counts["output"] + counts["final_norm"])
    if pp == 1:
        stage_params = counts["total"]
    params_per_gpu = stage_params / tp
    bf16 = config.precision in ("auto", "bf16")
    weights = params_per_gpu * (2 if bf16 else 4)
    grads = params_per_gpu * 4
    optimizer_states = params_per_gpu * (12 if bf16 else 8) / (dp if bf16 else 1)  # distributed optimizer on GPU
    in_flight = min(pp, microbatches)
    per_layer = activation_bytes_per_layer(shape, seq, mbs, tp, flash_attention=True, recompute=config.recompute_activations)
    activations = per_layer * layers_per_stage * in_flight
    logits = 2 * 4 * seq * mbs * padded / tp  # fp32 logits and their gradient
    activations += logits
    overhead = 2.5 * GIB  # CUDA context, NCCL buffers, allocator fragmentation (measured order)
    total = weights + grads + optimizer_states + activations + overhead

    fpt = flops_per_token(shape, seq, padded)
    tokens_per_step = config.global_batch_size * seq
    peak = config.peak_tflops_per_gpu * 1e12
    tokens_per_gpu_s = peak * source.mfu / fpt  # a measured MFU carries over: tokens/s scale with peak
    step_time = tokens_per_step / (tokens_per_gpu_s * gpus)
    stages = resolve_stages(config)
    steps = sum(stage.steps for stage in stages)
    meta_mfu = META_LLAMA2_7B_TOKENS_PER_GPU_S * flops_per_token(
        LlamaShape(32000, 4096, 11008, 32, 32, 32), 4096) / 312e12
    return {
        "model": {"vocab_size": shape.vocab_size, "padded_vocab_size": padded, "layers": shape.num_hidden_layers,
                  "hidden_size": shape.hidden_size, "parameters": counts["total"],
                  "embedding_parameters": counts["embedding"] + counts["output"]},
        "layout": {"gpus": gpus, "nodes": cluster.nodes, "tensor": tp, "pipeline": pp, "data": dp,
                   "micro_batch_size": mbs, "global_batch_size": config.global_batch_size,
                   "micro_batches_per_step": microbatches, "seq_length": seq, "tokens_per_step": tokens_per_step},
        "memory_gib_per_gpu": {"weights": weights / GIB, "gradients": grads / GIB,
                               "optimizer_states": optimizer_states / GIB, "activations": activations / GIB,
                               "overhead": overhead / GIB, "total": total / GIB,
                               "capacity": cluster.gpu_memory_gib, "fits": total / GIB <= cluster.gpu_memory_gib},
        "throughput": {"flops_per_token": fpt, "mfu": source.mfu, "mfu_origin": source.origin,
                       "mfu_label": source.label(), "mfu_measurement": source.measurement,
                       "peak_tflops_per_gpu": config.peak_tflops_per_gpu,
                       "tokens_per_s_per_gpu": tokens_per_gpu_s, "tokens_per_s": tokens_per_gpu_s * gpus,
                       "step_time_s": step_time, "steps": steps, "tokens": steps * tokens_per_step,
                       "hours": steps * step_time / 3600, "gpu_hours": steps * step_time * gpus / 3600},
        "korean_inference": korean_inference_cost(run, shape),
        "anchor": {"meta_llama2_7b_tokens_per_s_per_gpu": META_LLAMA2_7B_TOKENS_PER_GPU_S,
                   "meta_implied_mfu": meta_mfu,
                   "ours_vs_meta": tokens_per_gpu_s / META_LLAMA2_7B_TOKENS_PER_GPU_S},
    }


def render(result: dict) -> str:
    m, lay, mem, thr, anc = (result[k] for k in ("model", "layout", "memory_gib_per_gpu", "throughput", "anchor"))
    verdict = "fits" if mem["fits"] else "DOES NOT FIT: expect CUDA OOM (raise TP/PP, enable recompute_activations, or lower micro_batch_size)"
    lines = [
        f"model      {m['parameters'] / 1e9:.2f}B parameters ({m['embedding_parameters'] / 1e9:.2f}B in embedding + LM head), "
        f"{m['layers']} layers, hidden {m['hidden_size']}, vocab {m['vocab_size']:,} (padded {m['padded_vocab_size']:,})",
        f"layout     {lay['gpus']} GPUs ({lay['nodes']} nodes): TP={lay['tensor']} PP={lay['pipeline']} DP={lay['data']}; "
        f"micro batch {lay['micro_batch_size']} x {lay['micro_batches_per_step']} micro batches x DP = global batch "
        f"{lay['global_batch_size']} x seq {lay['seq_length']} = {lay['tokens_per_step']:,} tokens/step",
        "memory per GPU (GiB):",
        f"  weights {mem['weights']:7.2f}   (bf16 parameters of this rank's shard)",
        f"  grads   {mem['gradients']:7.2f}   (fp32 gradient buffer)",
        f"  optim   {mem['optimizer_states']:7.2f}   (fp32 master + Adam m, v; sharded over DP by the distributed optimizer)",
        f"  activ.  {mem['activations']:7.2f}   (first pipeline stage, incl. fp32 logits)",
        f"  other   {mem['overhead']:7.2f}   (CUDA context, NCCL, fragmentation)",
        f"  total   {mem['total']:7.2f} of {mem['capacity']:.0f} -> {verdict}",
        f"throughput at {thr['mfu_label']} of {thr['peak_tflops_per_gpu']:.0f} TFLOP/s peak: "
        f"{thr['flops_per_token'] / 1e9:.1f} GFLOP/token -> {thr['tokens_per_s_per_gpu']:,.0f} tokens/s per GPU, "
        f"{thr['tokens_per_s']:,.0f} tokens/s in total, {thr['step_time_s']:.2f} s/step",
        f"run        {thr['steps']:,} steps = {thr['tokens'] / 1e9:.1f}B tokens in {thr['hours']:.1f} h "
        f"({thr['gpu_hours']:,.0f} GPU-hours)",
        korean_line(result["korean_inference"]),
        f"anchor     Meta's Llama-2-7B: {anc['meta_llama2_7b_tokens_per_s_per_gpu']:,.0f} tokens/s per A100 "
        f"(~{100 * anc['meta_implied_mfu']:.0f}% MFU by this FLOP count); this plan: "
        f"{100 * anc['ours_vs_meta']:.0f}% of that per GPU",
    ]
    return "\n".join(lines)


def korean_line(cost: dict) -> str:
    if not cost["known"]:
        return f"Korean     inference cost per character unknown: {cost['why']}"
    return (f"Korean     {cost['tokens_per_char']:.3f} tokens/char (the base tokenizer: {cost['base_tokens_per_char']:.3f}) -> "
            f"{cost['ratio']:.2f}x the base vocabulary's forward FLOPs per Korean character "
            f"({cost['forward_flops_per_char'] / 1e9:.1f} vs {cost['base_forward_flops_per_char'] / 1e9:.1f} GFLOP)")


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("config", nargs="?", help="YAML config (pretrain:, model: and optional cluster: sections)")
    parser.add_argument("--config", dest="config_option", metavar="FILE", help="the same as CONFIG (as every stage takes it)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a pretrain config key (repeatable)")
    parser.add_argument("--nodes", type=int, help="nodes (default: cluster.nodes or 1)")
    parser.add_argument("--gpus-per-node", type=int, help="GPUs per node (default: cluster.gpus_per_node or 8)")
    parser.add_argument("--gpu-memory-gib", type=float, help="memory per GPU (default 80)")
    parser.add_argument("--mfu", type=float, help="model FLOPs utilization to assume (overrides any measurement)")
    parser.add_argument("--measured", metavar="FILE",
                        help="benchmarks/gpu.py JSON to take the MFU from (default: benchmarks/results/gpu.json "
                             "when present; else cluster.assumed_mfu, 0.45)")
    parser.add_argument("--json", help="also write the plan as JSON here")
    return parser


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    prog = parser.prog
    try:
        # --set cluster.KEY=VALUE is plan's own section; the others are pretrain's (keys relative to it).
        args.config = config_file(args.config, args.config_option, required=True)
        cluster_sets = [item for item in args.overrides if item.lstrip().startswith("cluster.")]
        run = load_config(args.config, [item for item in args.overrides if item not in cluster_sets])
        cluster = load_section(Cluster, "cluster", args.config, cluster_sets, flags={
            "nodes": args.nodes, "gpus_per_node": args.gpus_per_node, "gpu_memory_gib": args.gpu_memory_gib})
        if args.mfu is not None and args.measured is not None:
            raise ConfigError("--mfu and --measured: give one (--mfu overrides any measurement)")
        if args.mfu is not None and not 0 < args.mfu <= 1:
            raise ConfigError(f"--mfu must be in (0, 1], got {args.mfu}")
        result = plan(run, cluster, args.mfu, args.measured)
    except (ConfigError, ValueError, OSError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    print(render(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if math.isfinite(result["memory_gib_per_gpu"]["total"]) else 1


if __name__ == "__main__":
    from stagekit.entry import run_main  # Ctrl-C and bad input: one line

    sys.exit(run_main(main))
