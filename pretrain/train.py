"""Continued pretraining with Megatron-Core: the loop, top to bottom.

    torchrun --nproc_per_node 2 -m pretrain.train configs/demo.yaml [--set KEY=VALUE ...]
    kocpt pretrain configs/demo.yaml --check          # validate and print the plan, no training
    bash pretrain/launch.sh configs/demo.yaml         # locally, or sbatch it on a SLURM cluster

1. Resolve the run (`pretrain/resolve.py`): every check that needs no process group.
2. Start the processes (`pretrain/processes.py`): process group, parallel state, seeds.
3. Build the blended GPTDataset (train/valid) (`pretrain/data.py`) and find where to start: the
   run's `latest` checkpoint, another run's checkpoint (`checkpoint.load`), or the initial weights.
4. For each stage, build its model, trainable set, DDP, optimizer and schedule
   (`pretrain/stage_model.py`), restore state, then loop over steps (`pretrain/step.py`): check
   loss and grad norm are finite (skip or stop), log (`pretrain/run_log.py`), evaluate,
   checkpoint (`pretrain/checkpointing.py`). SIGUSR1/SIGTERM (or the launcher's stop file) ->
   checkpoint and exit 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from mcore_llama.build import causal_attention_mask
from mcore_llama.run_dir import ModelMetadata, latest_checkpoint, read_model_metadata, write_model_metadata
from pretrain import checkpointing
from pretrain.config import ConfigError, load_config
from pretrain.flops import flops_per_token
from pretrain.processes import StopRequest, init_distributed
from pretrain.resolve import TrainingRun, describe, resolve_training_run
from pretrain.run_log import Logger
from pretrain.stage_model import build_stage, frozen_row_masks, load_initial_weights
from pretrain.step import evaluate, make_forward_step, train_step
from stagekit.config import check_run_config, config_file
from tokenizer.model_match import fingerprint


def train(run: TrainingRun) -> int:
    from megatron.core import parallel_state
    from megatron.core.pipeline_parallel import get_forward_backward_func

    from pretrain.data import build_datasets, characters_table, micro_batches

    config = run.config
    rank = torch.distributed.get_rank()
    run_dir = Path(config.checkpoint.dir)
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        checkpointing.remove_partial(run_dir)
        _write_run_metadata(run, run_dir)
    torch.distributed.barrier()
    logger = Logger(run)
    logger.print(describe(run))
    stop = StopRequest()

    train_samples = run.train_steps * config.global_batch_size
    eval_rounds = (run.train_steps // config.eval.interval if config.eval.interval else 0) + 1
    valid_samples = config.eval.iters * config.global_batch_size * max(1, eval_rounds)
    cache_dir = config.data.cache_dir or str(run_dir / "data_cache")
    train_ds, valid_ds = build_datasets(config, run.blend, run.encoder.eos_id, train_samples, valid_samples, cache_dir)

    state = {"step": 0, "consumed_samples": 0, "skipped_steps": 0, "stage": 0}
    forward_backward = get_forward_backward_func()
    device = torch.cuda.current_device() if torch.cuda.is_available() else "cpu"
    attention_mask = causal_attention_mask(config.seq_length, device=device)
    chars_table = characters_table(run.encoder.char_lengths(), run.padded_vocab_size).to(device)
    forward_step = make_forward_step(attention_mask, chars_table)
    flops = flops_per_token(run.shape, config.seq_length, run.padded_vocab_size)
    tokens_per_step = config.global_batch_size * config.seq_length
    my_layout = run.layout.to_dict()
    steps_this_run = 0
    resume_from = run.resume_from
    carried_weights = None  # the previous stage's weights, within one process

    def save(model_chunk, optimizer, scheduler, why: str):
        started = time.perf_counter()
        path = checkpointing.save_checkpoint(
            run_dir, state["step"], model_chunk, optimizer, scheduler, state, my_layout, config.checkpoint.keep_last
        )
        logger.print(f"saved checkpoint {path} ({why}, {time.perf_counter() - started:.1f}s)")

    for stage_index, stage in enumerate(run.stages):
        stage_end = run.stage_ends[stage_index]
        stage_start = stage_end - stage.steps
        if resume_from is not None:  # which stage does the checkpoint continue?
            common = checkpointing.load_common(resume_from)
            if common["train_state"]["step"] >= stage_end:
                continue
        elif state["step"] >= stage_end:
            continue
        model, ddp, optimizer, scheduler = build_stage(run, stage)
        optimizer_restored = False
        if resume_from is not None:
            same_stage = common["train_state"]["stage"] == stage_index
            checkpointing.load_checkpoint(resume_from, model, optimizer, scheduler, my_layout, with_optimizer=same_stage)
            optimizer_restored = same_stage
            state.update(common["train_state"], stage=stage_index)
            logger.print(
                f"resumed from {resume_from} at step {state['step']} "
                f"({'model, optimizer and schedule' if same_stage else 'model only: new stage'})"
            )
            resume_from = None
        elif carried_weights is not None:
            model.load_state_dict(carried_weights, strict=True)
        else:
            load_initial_weights(run, model)
        ddp.broadcast_params()
        if not optimizer_restored:
            # bf16 on GPUs: the optimizer copied the weights into its fp32 main parameters when
            # build_stage made it, before these were loaded; without this, its first step writes
            # the (random) weights of that moment back. (fp32 on CPU keeps no copy: a no-op.)
            optimizer.reload_model_params()
        state["stage"] = stage_index
        frozen_rows = frozen_row_masks(model, run.base_vocab_size) if stage.new_rows_only else []
        trainable_count = sum(p.numel() for p in model.parameters() if p.requires_grad)
        logger.print(f"stage {stage_index} '{stage.name}': steps {stage_start + 1}..{stage_end}, "
                     f"{trainable_count:,} trainable parameters on rank {rank}")
        iterator = micro_batches(
            train_ds, state["consumed_samples"], config.micro_batch_size, run.layout.data,
            parallel_state.get_data_parallel_rank(),
        )
        last_saved = state["step"] if run.resume_from is not None else -1
        while state["step"] < stage_end:
            reason = stop.requested()
            if reason:
                if last_saved != state["step"]:
                    save(model, optimizer, scheduler, reason)
                logger.print(f"stopping at step {state['step']}: {reason}")
                logger.close()
                return 0
            started = time.perf_counter()
            loss, grad_norm, stepped = train_step(
                run, ddp, optimizer, scheduler, iterator, forward_backward, forward_step, frozen_rows
            )
            elapsed = time.perf_counter() - started
            state["step"] += 1
            state["consumed_samples"] += config.global_batch_size
            steps_this_run += 1
            if not stepped:
                state["skipped_steps"] += 1
                logger.print(f"step {state['step']}: non-finite loss {loss} or grad norm {grad_norm}; update skipped "
                             f"({state['skipped_steps']}/{config.max_nan_skips} skips allowed)")
                if state["skipped_steps"] > config.max_nan_skips:
                    logger.print(f"error: stopping at step {state['step']}: non-finite loss/gradients "
                                 f"(raise pretrain.max_nan_skips to skip more, or lower the lr)")
                    logger.close()
                    return 3
            tokens_per_s = tokens_per_step / elapsed
            metrics = {
                "loss": loss,
                "lr": optimizer.param_groups[0]["lr"] if optimizer.param_groups else 0.0,
                "grad_norm": grad_norm,
                "tokens_per_s": tokens_per_s,
                "step_time_s": elapsed,
                "mfu": tokens_per_s * flops / (run.world_size * config.peak_tflops_per_gpu * 1e12),
                "stage": stage_index,
                "consumed_samples": state["consumed_samples"],
            }
            if config.log.interval and state["step"] % config.log.interval == 0:
                logger.print(
                    f"step {state['step']:>6}/{run.train_steps} | {stage.name} | loss {loss:.6f} | "
                    f"lr {metrics['lr']:.3e} | grad_norm {grad_norm:.4f} | {tokens_per_s:,.0f} tokens/s | "
                    f"{elapsed:.3f}s/step | MFU {100 * metrics['mfu']:.2f}%"
                )
            final = state["step"] == run.train_steps
            if (config.eval.interval and state["step"] % config.eval.interval == 0) or final:
                metrics.update(evaluate(run, ddp, valid_ds, forward_backward, forward_step))
                logger.print(f"step {state['step']:>6} | validation loss {metrics['val_loss']:.4f} | "
                             f"ppl {metrics['val_ppl']:.2f} | bits/char {metrics['val_bpc']:.4f}")
            logger.record(state["step"], metrics)
            interval = config.checkpoint.interval
            if (interval and state["step"] % interval == 0) or state["step"] == stage_end:
                save(model, optimizer, scheduler, "end of stage" if state["step"] == stage_end else "interval")
                last_saved = state["step"]
            if config.exit_after_steps and steps_this_run >= config.exit_after_steps and not final:
                if last_saved != state["step"]:
                    save(model, optimizer, scheduler, "exit_after_steps")
                logger.print(f"stopping at step {state['step']}: exit_after_steps={config.exit_after_steps}")
                logger.close()
                return 0
        if stage_index + 1 < len(run.stages):
            carried_weights = {k: v.detach().clone() if torch.is_tensor(v) else v for k, v in model.state_dict().items()}
        del model, ddp, optimizer, scheduler
    logger.print(f"done: {state['step']} steps, {state['consumed_samples'] * config.seq_length:,} tokens, "
                 f"{state['skipped_steps']} skipped; latest checkpoint {latest_checkpoint(run_dir)}")
    logger.close()
    return 0


def _write_run_metadata(run: TrainingRun, run_dir: Path) -> None:
    """kocpt_model.json beside the iter_* dirs (the converter reads it to go back to HF)."""
    hf_config, generation_config = {}, None
    if run.init_kind == "hf":  # (run.base_vocab_size: resolved from the init or set, see resolve.base_vocab_size)
        hf_config = json.loads((Path(run.init_path) / "config.json").read_text())
        generation_file = Path(run.init_path) / "generation_config.json"
        if generation_file.is_file():  # resize's suppress_tokens (its pad rows) travel to the export
            generation_config = json.loads(generation_file.read_text())
    elif run.init_kind == "megatron_checkpoint":
        init = read_model_metadata(run.init_path)
        hf_config, generation_config = init.hf_config, init.generation_config
    write_model_metadata(
        run_dir,
        ModelMetadata(shape=run.shape, dtype=run.params_dtype, padded_vocab_size=run.padded_vocab_size,
                      hf_config=hf_config, generation_config=generation_config,
                      tokenizer=fingerprint(run.encoder), base_vocab_size=run.base_vocab_size),  # encoder: loaded once
    )


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Continued pretraining of a Llama model with Megatron-Core (run under torchrun "
        "for more than one process; see pretrain/launch.sh).",
    )
    parser.add_argument("config", nargs="?", help="YAML config with pretrain: (and model:) sections")
    parser.add_argument("--config", dest="config_option", metavar="FILE", help="the same as CONFIG (as every stage takes it)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set optimizer.lr=1e-4 (repeatable)")
    parser.add_argument("--check", action="store_true", help="validate the config (every section of the file typed), print the plan and exit")
    parser.add_argument("--world-size", type=int, default=None, help="with --check: the world size to plan for")
    return parser


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    prog = parser.prog
    try:
        config = config_file(args.config, args.config_option)
        run = resolve_training_run(load_config(config, args.overrides), args.world_size)
        if args.check and config:  # launch.sh checks before any process starts: every section of the file
            check_run_config(config)
    except ConfigError as exc:
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"{prog}: error: {exc}", file=sys.stderr, flush=True)
        else:  # torchrun ends every rank once one exits: let rank 0 say why first
            time.sleep(3)
        return 2
    if args.check:
        print(describe(run))
        return 0
    init_distributed(run.layout, run.config.seed)
    try:
        return train(run)
    finally:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    from stagekit.entry import run_main  # Ctrl-C and bad input: one line

    sys.exit(run_main(main))
