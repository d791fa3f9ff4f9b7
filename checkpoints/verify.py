"""Check a conversion by its logits: Hugging Face model vs Megatron-Core at given TP×PP layouts.

    python -m torch.distributed.run --nproc_per_node 2 -m checkpoints.verify \\
        --hf HF_DIR --megatron MEGATRON_DIR --layouts 2x1,1x2

Loads the Megatron model at each TP×PP layout (from the dist checkpoint, or straight from the
HF safetensors with `--megatron` omitted: each rank reading only its slices), runs the same
tokens through it and through its family's `transformers` class (LlamaForCausalLM, Qwen2ForCausalLM) in fp32, and reports the largest
absolute logit difference over the real vocabulary and both models' mean losses. Mapping bugs
(q/k/v not grouped per query group, [gate; up] swapped or split naively across TP ranks) load
without error and only show here. Exits 1 when a difference exceeds `--tolerance`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from stagekit.errors import BadInput


def init_distributed() -> None:
    """gloo process group from torchrun's environment (or a one-rank group without it)."""
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if "RANK" in os.environ:
        dist.init_process_group("gloo")
    else:
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)


def megatron_forward(model, tokens: torch.Tensor, labels: torch.Tensor | None = None):
    """One forward pass through this rank's stage, passing activations between PP stages.

    Returns full-vocabulary logits [b, s, V_padded] (gathered over TP) — or, with labels,
    Megatron's own per-token loss [b, s] — on the last stage, None elsewhere.
    """
    import torch.distributed as dist
    from megatron.core import parallel_state

    from mcore_llama.build import causal_attention_mask

    b, s = tokens.shape
    position_ids = torch.arange(s).unsqueeze(0).expand(b, s)
    mask = causal_attention_mask(s)
    if not parallel_state.is_pipeline_first_stage():
        hidden = torch.empty(s, b, model.config.hidden_size, dtype=model.config.params_dtype)
        dist.recv(hidden, parallel_state.get_pipeline_model_parallel_prev_rank())
        model.set_input_tensor(hidden)
    with torch.no_grad():
        out = model(tokens, position_ids, mask, labels=labels, runtime_gather_output=labels is None)
    if not parallel_state.is_pipeline_last_stage():
        dist.send(out.contiguous(), parallel_state.get_pipeline_model_parallel_next_rank())
        return None
    return out


def megatron_outputs(hf_dir: Path, megatron_dir: Path | None, tp: int, pp: int, tokens: torch.Tensor, table_fn=None) -> dict | None:
    """Build the model at TP×PP, load it, return {'logits', 'loss'} on the reporting rank."""
    from megatron.core import parallel_state

    from mcore_llama.build import build_gpt_model
    from mcore_llama.run_dir import read_model_metadata, resolve_checkpoint
    from mcore_llama.runtime import init_model_parallel
    from mcore_llama.families import shape_from_hf_dir
    from mcore_llama.vocab_padding import mask_padded_vocab
    from mcore_llama.weights import load_hf_into_megatron, load_megatron_checkpoint_into

    init_model_parallel(tp, pp, seed=1234)
    try:
        if megatron_dir is not None:
            megatron_dir = resolve_checkpoint(megatron_dir)  # a training run stands for its latest checkpoint
            meta = read_model_metadata(megatron_dir)
            shape, dtype = meta.shape, meta.dtype
        else:
            shape, dtype = shape_from_hf_dir(hf_dir), torch.float32
        model = build_gpt_model(
            shape, tensor_parallel=tp, pipeline_parallel=pp, params_dtype=dtype,
            use_transformer_engine=False, perform_initialization=False,
        )
        if megatron_dir is not None:
            load_megatron_checkpoint_into(model, megatron_dir)
        else:
            load_hf_into_megatron(model, hf_dir, shape, table_fn=table_fn)
        mask_padded_vocab(model, shape.vocab_size)
        model.eval()
        logits = megatron_forward(model, tokens)
        loss = megatron_forward(model, tokens[:, :-1], labels=tokens[:, 1:])
        reporting = (
            parallel_state.is_pipeline_last_stage()
            and parallel_state.get_tensor_model_parallel_rank() == 0
            and parallel_state.get_data_parallel_rank() == 0
        )
        if not reporting:
            return None
        return {
            "logits": logits[..., : shape.vocab_size].float(),
            "padded_logits_max": float(logits[..., shape.vocab_size :].max()) if logits.shape[-1] > shape.vocab_size else None,
            "loss": float(loss.float().mean()),
            "padded_vocab_size": int(logits.shape[-1]),
        }
    finally:
        parallel_state.destroy_model_parallel()


def hf_outputs(hf_dir: Path, tokens: torch.Tensor) -> dict:
    from mcore_llama.families import family_of_hf_config, read_hf_config

    model = family_of_hf_config(read_hf_config(hf_dir)).hf_model_class().from_pretrained(hf_dir, dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        logits = model(tokens).logits
    # Same loss as Megatron's: mean next-token cross-entropy over tokens[:, 1:].
    logp = torch.log_softmax(logits[:, :-1].float(), -1)
    loss = -logp.gather(-1, tokens[:, 1:, None]).mean()
    return {"logits": logits.float(), "loss": float(loss)}


def sample_tokens(vocab_size: int, batch: int = 2, seq: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab_size, (batch, seq), generator=torch.Generator().manual_seed(seed))


def compare(hf_dir: Path, megatron_dir: Path | None, layouts: list[tuple[int, int]], tokens: torch.Tensor | None = None, table_fn=None, seq_length: int = 16) -> list[dict] | None:
    """Run every layout; on global rank 0 return one report per layout (None elsewhere)."""
    import torch.distributed as dist

    from mcore_llama.families import shape_from_hf_dir

    init_distributed()
    try:
        shape = shape_from_hf_dir(hf_dir)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise BadInput(f"--hf {hf_dir}: {exc}") from None
    tokens = sample_tokens(shape.vocab_size, seq=seq_length) if tokens is None else tokens
    reference = hf_outputs(hf_dir, tokens) if dist.get_rank() == 0 else None
    reports = []
    for tp, pp in layouts:
        if dist.get_world_size() % (tp * pp):
            raise BadInput(f"layout {tp}x{pp} does not divide the world size {dist.get_world_size()}")
        out = megatron_outputs(hf_dir, megatron_dir, tp, pp, tokens, table_fn)
        # The reporting rank sends its result to rank 0.
        gathered = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
        dist.gather_object(out, gathered, dst=0)
        if dist.get_rank() == 0:
            result = next(r for r in gathered if r is not None)
            reports.append(
                {
                    "tp": tp,
                    "pp": pp,
                    "max_abs_logit_diff": float((result["logits"] - reference["logits"]).abs().max()),
                    "hf_loss": reference["loss"],
                    "megatron_loss": result["loss"],
                    "padded_vocab_size": result["padded_vocab_size"],
                    "padded_logits_max": result["padded_logits_max"],
                }
            )
    return reports if dist.get_rank() == 0 else None


def parse_layouts(text: str) -> list[tuple[int, int]]:
    try:
        layouts = [tuple(int(x) for x in item.split("x")) for item in text.split(",")]
    except ValueError:
        raise BadInput(f"--layouts {text!r}: expected TPxPP[,TPxPP...], e.g. 2x1,1x2") from None
    if any(len(layout) != 2 or min(layout) < 1 for layout in layouts):
        raise BadInput(f"--layouts {text!r}: expected TPxPP[,TPxPP...], e.g. 2x1,1x2")
    return layouts  # type: ignore[return-value]


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--hf", required=True, type=Path, help="Hugging Face Llama directory (the reference)")
    parser.add_argument("--megatron", type=Path, help="Megatron checkpoint dir, or a training run (its latest checkpoint); default: load the HF weights directly")
    parser.add_argument("--layouts", default="1x1", help="TPxPP layouts to check, comma-separated (default 1x1)")
    parser.add_argument("--seq-length", type=int, default=16,
                        help="tokens per test sequence (long enough to reach the positions a RoPE scaling changes)")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="max abs logit difference allowed")
    parser.add_argument("--json", type=Path, help="also write the reports here")
    args = parser.parse_args(argv)
    prog = prog or "verify"
    import torch.distributed as dist

    try:
        if args.seq_length < 2:
            raise BadInput(f"--seq-length {args.seq_length}: needs at least 2 tokens")
        reports = compare(args.hf, args.megatron, parse_layouts(args.layouts), seq_length=args.seq_length)
    except BadInput as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    ok = True
    if dist.get_rank() == 0:
        for r in reports:
            good = r["max_abs_logit_diff"] <= args.tolerance
            ok &= good
            print(
                f"TP={r['tp']} PP={r['pp']}: max |logit diff| {r['max_abs_logit_diff']:.2e} "
                f"loss HF {r['hf_loss']:.6f} Megatron {r['megatron_loss']:.6f} {'ok' if good else 'MISMATCH'}"
            )
        if args.json:
            args.json.write_text(json.dumps(reports, indent=2) + "\n")
    flag = torch.tensor([int(ok)])
    dist.broadcast(flag, 0)
    dist.destroy_process_group()
    return 0 if bool(flag) else 1


if __name__ == "__main__":
    from stagekit.entry import run_main  # Ctrl-C and bad input: one line

    sys.exit(run_main(main))
