"""One training stage's model: this rank's GPTModel with the stage's trainable set, wrapped in
Megatron DDP, with Megatron's optimizer and lr schedule; and the run's initial weights.

Stages (Chinese-LLaMA/EEVE style: new embedding rows first, then everything) differ only in what
is trainable and in their schedule, so each stage builds its own optimizer; the weights carry over.
"""

from __future__ import annotations

import fnmatch

import torch

from mcore_llama.build import build_gpt_model
from mcore_llama.vocab_padding import mask_padded_vocab
from mcore_llama.weights import load_hf_into_megatron, load_megatron_checkpoint_into
from pretrain.config import StageConfig
from pretrain.resolve import TrainingRun

EMBEDDING_PARAMS = ("embedding.word_embeddings.weight", "output_layer.weight")


def trainable(name: str, stage: StageConfig) -> bool:
    if stage.trainable == "all":
        return True
    if stage.trainable == "embeddings":
        return name in EMBEDDING_PARAMS
    return any(fnmatch.fnmatch(name, pattern) for pattern in stage.trainable)


def build_stage(run: TrainingRun, stage: StageConfig, *, use_transformer_engine: bool | None = None,
                distributed_optimizer: bool | None = None):
    """GPTModel (this rank's part) in Megatron DDP, its optimizer and lr schedule.

    `use_transformer_engine` / `distributed_optimizer`: None = the training defaults (TE spec when
    importable on GPUs; distributed optimizer on GPUs with data parallel > 1); benchmarks/gpu.py
    sets them."""
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig, finalize_model_grads
    from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer, get_standard_config_overrides
    from megatron.core.optimizer.optimizer_config import ParamKey
    from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

    config = run.config
    tp = run.layout.tensor
    model = build_gpt_model(
        run.shape,
        tensor_parallel=tp,
        pipeline_parallel=run.layout.pipeline,
        params_dtype=run.params_dtype,
        make_vocab_size_divisible_by=run.padded_vocab_size // tp,  # reproduces the stored padding
        recompute=config.recompute_activations,
        use_transformer_engine=use_transformer_engine,
    )
    mask_padded_vocab(model, run.shape.vocab_size)  # padded ids never take probability mass
    for name, param in model.named_parameters():
        param.requires_grad_(trainable(name, stage))
    model.config.calculate_per_token_loss = True  # loss = Σ NLL / Σ tokens of the global batch
    on_gpu = torch.cuda.is_available()
    ddp = DistributedDataParallel(
        config=model.config,
        ddp_config=DistributedDataParallelConfig(
            grad_reduce_in_fp32=True,
            use_distributed_optimizer=(on_gpu and run.layout.data > 1) if distributed_optimizer is None
            else distributed_optimizer,  # not on CPU (DESIGN.md)
            overlap_grad_reduce=False,
        ),
        module=model,
    )
    opt = config.optimizer
    lr, min_lr, warmup = stage.schedule(opt)
    optimizer_config = OptimizerConfig(
        optimizer="adam",
        lr=lr,
        min_lr=min_lr,
        weight_decay=opt.weight_decay,
        adam_beta1=opt.adam_beta1,
        adam_beta2=opt.adam_beta2,
        adam_eps=opt.adam_eps,
        clip_grad=opt.clip_grad,
        bf16=run.params_dtype == torch.bfloat16,
        params_dtype=run.params_dtype,
        use_distributed_optimizer=ddp.ddp_config.use_distributed_optimizer,
    )
    overrides = get_standard_config_overrides(optimizer_config)
    if stage.new_rows_only:  # decoupled weight decay would move the frozen rows
        # (names seen through the DDP wrapper: "module.embedding.word_embeddings.weight")
        overrides[ParamKey(name=tuple("*" + name for name in EMBEDDING_PARAMS))] = {"wd_mult": 0.0}
    optimizer = get_megatron_optimizer(optimizer_config, [ddp], config_overrides=overrides)
    # On resume, Megatron-core's default (use_checkpoint_opt_param_scheduler=True) would keep the
    # checkpoint's schedule and silently drop this config's; resolve.py has already refused a
    # difference unless checkpoint.resume_schedule says which one wins.
    policy = config.checkpoint.resume_schedule
    scheduler = OptimizerParamScheduler(
        optimizer,
        init_lr=0.0,
        **stage.scheduler_settings(opt),
        use_checkpoint_opt_param_scheduler=policy == "checkpoint",
        override_opt_param_scheduler=policy == "config",
    )
    model.config.finalize_model_grads_func = finalize_model_grads
    model.config.no_sync_func = ddp.no_sync
    model.config.grad_scale_func = optimizer.scale_loss
    return model, ddp, optimizer, scheduler


def frozen_row_masks(model, base_vocab_size: int) -> list[tuple[torch.nn.Parameter, slice]]:
    """(param, local rows < base_vocab_size) for this rank's embedding and output weights."""
    from megatron.core import parallel_state

    tp_rank = parallel_state.get_tensor_model_parallel_rank()
    masks = []
    for name, param in model.named_parameters():
        if name in EMBEDDING_PARAMS and param.requires_grad:
            local_rows = param.shape[0]
            start = tp_rank * local_rows
            frozen = max(0, min(base_vocab_size - start, local_rows))
            if frozen:
                masks.append((param, slice(0, frozen)))
    return masks


def load_initial_weights(run: TrainingRun, model) -> None:
    if run.init_kind == "random":
        return  # Megatron's own initialization (init_method_std from the shape), seeded
    if run.init_kind == "hf":
        load_hf_into_megatron(model, run.init_path, run.shape)
    else:
        load_megatron_checkpoint_into(model, run.init_path)
