"""Calibrated LM-head rows for new tokens: the init's rows plus one fitted logit shift per new token.

FVT's output rows say *which* contexts a new token fits, but not *how likely* it is: the mean of its
pieces' rows gives it about the average of their logits, which is far from the probability the
expanded model should give the whole token. `--lm-head calibrated` keeps the rows' direction and fits
one scalar per new token along d = m / |m|² (m: the mean final hidden state on the calibration
text), so that token's logit moves by about a_j wherever the hidden state is near its mean:

    row_j = fvt_row_j + a_j · d,     a = argmin  Σ_i CE(softmax(W h_i), t_i) + Σ_j a_j² / (2σ²)

The cross-entropy is over the full vocabulary (old rows fixed), on `calibration_tokens` positions of
the merged tokenizer's own encoding of `--calibration-text`, with the expanded model's own input rows;
the Gaussian prior (σ = `calibration_prior_std`, logit units) keeps tokens the text never shows near
their FVT logits. The problem is convex in `a` (a log-sum-exp of affine functions plus a quadratic),
so L-BFGS finds its one minimum; gradients are computed in row chunks so memory stays at the N × new
logits table. On SmolLM2-135M this starts Korean about half-way back from FVT to the base at no cost
in English (benchmarks/README.md, "Calibrated output rows").

The compute is one forward pass over the calibration tokens (2 · parameters · tokens FLOPs, reported)
plus the fit, which never touches the network again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from corpus.documents import read_documents
from stagekit.errors import BadInput

CHUNK_ROWS = 2048  # positions per chunk of the fit's loss and gradient


def read_calibration_documents(path: str | Path) -> list[str]:
    """The calibration text: a text file (one document per line), JSONL, or corpus shards / a corpus output."""
    return read_documents(path, what="calibration text")


@dataclass(frozen=True)
class CalibrationResult:
    shifts: torch.Tensor  # (new rows,) a_j, float32
    direction: torch.Tensor  # (hidden,) d = m / |m|², float32
    documents: int
    tokens: int  # positions scored (targets)
    forward_flops: float  # 2 · parameters · tokens of the one forward pass
    forward_seconds: float
    fit_seconds: float
    fit_evaluations: int  # loss-and-gradient evaluations L-BFGS made
    loss_before: float  # nats per calibration token, with the init's rows
    loss_after: float  # with the fitted shifts

    def summary(self) -> dict:
        return {
            "documents": self.documents, "tokens": self.tokens, "forward_flops": self.forward_flops,
            "forward_seconds": round(self.forward_seconds, 3), "fit_seconds": round(self.fit_seconds, 3),
            "fit_evaluations": self.fit_evaluations,
            "nats_per_token_before": round(self.loss_before, 5), "nats_per_token_after": round(self.loss_after, 5),
            "shift_mean": round(float(self.shifts.mean()), 4) if len(self.shifts) else None,
            "shift_min": round(float(self.shifts.min()), 4) if len(self.shifts) else None,
            "shift_max": round(float(self.shifts.max()), 4) if len(self.shifts) else None,
        }


def token_windows(encoded: Iterable[list[int]], bos_id: int, max_tokens: int, context: int
                  ) -> tuple[list[list[int]], int]:
    """Documents (BOS first where the tokenizer has one) cut into windows of at most `context` + 1 ids,
    until `max_tokens` targets are reached; each window predicts its ids after the first.
    (windows, how many documents they come from)."""
    windows: list[list[int]] = []
    targets = documents = 0
    for ids in encoded:
        documents += 1
        ids = ([bos_id] if bos_id >= 0 else []) + list(ids)
        for start in range(0, max(len(ids) - 1, 0), context):
            window = ids[start:start + context + 1]
            take = min(len(window) - 1, max_tokens - targets)
            if take <= 0:
                break
            windows.append(window[:take + 1])
            targets += take
        if targets >= max_tokens:
            break
    return windows, documents


@torch.no_grad()
def final_hidden_states(model, windows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """The decoder's final (normed) hidden states before each target, float32, and the targets."""
    hidden, targets = [], []
    decoder = model.base_model  # LlamaModel / Qwen2Model: last_hidden_state is after the final norm
    for window in windows:
        ids = torch.tensor([window])
        state = decoder(input_ids=ids).last_hidden_state[0, :-1]
        hidden.append(state.float())
        targets.append(ids[0, 1:])
    return torch.cat(hidden), torch.cat(targets)


def fit_shifts(hidden: torch.Tensor, targets: torch.Tensor, head: torch.Tensor, new: range, prior_std: float,
               max_iterations: int = 100) -> tuple[torch.Tensor, torch.Tensor, float, float, int]:
    """Fit a_j for the rows `new` of `head` (float32, all rows): (shifts, direction, loss before, after, evaluations)."""
    n, lo, hi = hidden.shape[0], new.start, new.stop
    mean = hidden.mean(0)
    direction = mean / mean.dot(mean)
    if hi == lo:  # no new rows: nothing to fit
        return torch.zeros(0), direction, 0.0, 0.0, 0
    fixed = torch.cat([head[:lo], head[hi:]])
    fixed_lse = torch.cat([torch.logsumexp(hidden[i:i + CHUNK_ROWS] @ fixed.T, dim=1)
                           for i in range(0, n, CHUNK_ROWS)])
    del fixed
    z_new = hidden @ head[lo:hi].T  # (N, new): the init's logits for the new tokens
    scale = hidden @ direction  # s_i: how far along d each position's hidden state lies
    target_is_new = (targets >= lo) & (targets < hi)
    target_old_logit = torch.einsum("nh,nh->n", hidden, head[targets.clamp(max=head.shape[0] - 1)])
    new_index = (targets - lo).clamp(0, hi - lo - 1)
    shifts = torch.zeros(hi - lo, requires_grad=True)
    inverse_variance = 1.0 / prior_std ** 2

    def loss_and_grad(a: torch.Tensor) -> tuple[float, torch.Tensor]:
        total, grad = 0.0, torch.zeros_like(a)
        for i in range(0, n, CHUNK_ROWS):
            s = scale[i:i + CHUNK_ROWS, None]
            logits = z_new[i:i + CHUNK_ROWS] + a[None] * s
            lse = torch.logaddexp(fixed_lse[i:i + CHUNK_ROWS], torch.logsumexp(logits, dim=1))
            is_new = target_is_new[i:i + CHUNK_ROWS]
            rows = torch.arange(len(lse))
            target_logit = torch.where(is_new, logits[rows, new_index[i:i + CHUNK_ROWS]],
                                       target_old_logit[i:i + CHUNK_ROWS])
            total += float((lse - target_logit).sum())
            probability = torch.exp(logits - lse[:, None])
            grad += (probability * s).sum(0)
            grad.index_add_(0, new_index[i:i + CHUNK_ROWS][is_new], -scale[i:i + CHUNK_ROWS][is_new])
        total += 0.5 * inverse_variance * float(a.dot(a))
        grad += inverse_variance * a
        return total / n, grad / n

    before = loss_and_grad(torch.zeros(hi - lo))[0]
    optimizer = torch.optim.LBFGS([shifts], lr=1.0, max_iter=max_iterations, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-9, tolerance_change=1e-12)
    evaluations = 0

    def closure():
        nonlocal evaluations
        evaluations += 1
        value, grad = loss_and_grad(shifts.detach())
        shifts.grad = grad
        return torch.tensor(value)

    optimizer.step(closure)
    fitted = shifts.detach().clone()
    prior = 0.5 * inverse_variance * float(fitted.dot(fitted)) / n
    after = loss_and_grad(fitted)[0] - prior  # report the data term alone, as `before` (a = 0: no prior term)
    return fitted, direction, before, after, evaluations


def calibrate(model_dir: Path, new: range, documents: list[str], source: str | Path, max_tokens: int,
              prior_std: float, context: int = 512) -> CalibrationResult:
    """Load the resized model at `model_dir` (its own tokenizer beside it) and fit the shifts of the rows `new`
    on `documents` (read from `source`, which error messages name)."""
    from transformers import AutoModelForCausalLM

    from tokenizer.token_encoder import TokenEncoder

    encoder = TokenEncoder.load(model_dir)
    # Encoded a batch at a time, lazily: a large file is read only as far as `max_tokens` needs.
    encoded = (ids for i in range(0, len(documents), 256) for ids in encoder.encode_batch(documents[i:i + 256]))
    windows, used = token_windows(encoded, encoder.bos_id, max_tokens, context)
    if not windows:
        raise BadInput(f"{source}: the calibration text encodes to no tokens to predict")
    started = time.perf_counter()
    # The stored dtype (bf16 for a 7B: half the memory of float32); the fit itself runs in float32.
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype="auto").eval()
    hidden, targets = final_hidden_states(model, windows)
    forward_seconds = time.perf_counter() - started
    parameters = sum(p.numel() for p in model.parameters())
    head = model.get_output_embeddings().weight.detach().float()
    del model
    started = time.perf_counter()
    shifts, direction, before, after, evaluations = fit_shifts(hidden, targets, head, new, prior_std)
    return CalibrationResult(
        shifts=shifts, direction=direction, documents=used, tokens=len(targets),
        forward_flops=2.0 * parameters * len(targets), forward_seconds=forward_seconds,
        fit_seconds=time.perf_counter() - started, fit_evaluations=evaluations,
        loss_before=before, loss_after=after,
    )


def calibrated_rows(rows: torch.Tensor, result: CalibrationResult) -> torch.Tensor:
    """The init's new LM-head rows moved by a_j along d, in the rows' dtype."""
    moved = rows.float() + result.shifts[:, None] * result.direction[None]
    if not torch.isfinite(moved).all() or math.isnan(result.loss_after):
        raise BadInput("the LM-head calibration diverged (non-finite rows); try a larger calibration text")
    return moved.to(rows.dtype)
