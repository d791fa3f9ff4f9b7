"""One training step and one evaluation, through Megatron's forward/backward schedule.

`make_forward_step` feeds one micro-batch to the model and returns Megatron's per-token loss with
a loss function that sums NLL over real tokens; `train_step` runs every micro-batch of the global
batch (`get_forward_backward_func`: any pipeline schedule), zeroes the gradient of frozen rows,
and steps unless the loss or the gradient norm is not finite. Reports carry [Σ NLL, tokens,
characters] so validation gives bits per character, comparable across tokenizers.
"""

from __future__ import annotations

import math
from functools import partial

import torch



def loss_func(loss_mask, characters, output_tensor):
    """Per-token NLL -> (Σ NLL, tokens, reported [Σ NLL, tokens, characters])."""
    losses = output_tensor.float()
    mask = loss_mask.float()
    loss_sum = torch.sum(losses * mask)
    num_tokens = mask.sum().to(torch.int)
    report = torch.stack([loss_sum.detach(), mask.sum(), torch.sum(characters * mask)])
    return loss_sum, num_tokens, {"lm": report}


def make_forward_step(attention_mask, chars_table):
    def forward_step(data_iterator, model):
        batch = next(data_iterator)
        characters = chars_table[batch["labels"]].float()
        output = model(batch["tokens"], batch["position_ids"], attention_mask, labels=batch["labels"])
        return output, partial(loss_func, batch["loss_mask"], characters)

    return forward_step


def reduce_report(reports: list[dict]) -> torch.Tensor:
    """[Σ NLL, tokens, characters] over the global batch, identical on every rank."""
    from megatron.core import parallel_state

    total = torch.zeros(3, dtype=torch.float64)
    owner = parallel_state.is_pipeline_last_stage() and parallel_state.get_tensor_model_parallel_rank() == 0
    if owner:
        for report in reports:
            total += report["lm"].double()
    torch.distributed.all_reduce(total)
    return total


def run_batches(forward_backward, ddp, iterator, run, forward_step, forward_only: bool):
    return forward_backward(
        forward_step_func=forward_step,
        data_iterator=iterator,
        model=[ddp],
        num_microbatches=run.num_microbatches,
        seq_length=run.config.seq_length,
        micro_batch_size=run.config.micro_batch_size,
        forward_only=forward_only,
    )


def train_step(run, ddp, optimizer, scheduler, iterator, forward_backward, forward_step, frozen_rows):
    ddp.zero_grad_buffer()
    optimizer.zero_grad()
    reports = run_batches(forward_backward, ddp, iterator, run, forward_step, forward_only=False)
    total = reduce_report(reports)
    for param, rows in frozen_rows:  # stage 1 "new rows only": the base vocabulary stays put
        param.main_grad[rows] = 0
    loss = (total[0] / total[1]).item()
    optimizer.prepare_grads()
    grad_norm = float(optimizer.get_grad_norm())
    if not (math.isfinite(loss) and math.isfinite(grad_norm)):
        return loss, grad_norm, False
    optimizer.step()
    scheduler.step(increment=1)
    return loss, grad_norm, True


@torch.no_grad()
def evaluate(run, ddp, valid_dataset, forward_backward, forward_step) -> dict:
    from megatron.core import parallel_state

    from pretrain.data import micro_batches

    ddp.eval()
    iterator = micro_batches(
        valid_dataset, 0, run.config.micro_batch_size, run.layout.data, parallel_state.get_data_parallel_rank()
    )
    total = torch.zeros(3, dtype=torch.float64)
    for _ in range(run.config.eval.iters):
        total += reduce_report(run_batches(forward_backward, ddp, iterator, run, forward_step, forward_only=True))
    ddp.train()
    loss = (total[0] / total[1]).item()
    return {"val_loss": loss, "val_ppl": math.exp(min(loss, 50.0)), "val_bpc": (total[0] / math.log(2) / total[2]).item()}
