"""Distilled input rows for new tokens, in the spirit of Token Distillation (Dobler et al. 2025, arXiv 2505.20133).

The expanded model contains its base: its old rows are the base's, so the same network reading the *base*
tokenization of a text is the teacher. A new token's input row is trained so that the network reading the
merged tokenization reaches the teacher's final hidden state wherever both tokenizations end a token at the
same byte of the text (an aligned boundary: after "한국어는" in both, whether it took one new token or six
old ones):

    E_new = argmin  Σ_windows Σ_(i, j) aligned  | h(merged ids; E_new)_j − h(base ids)_i |²     (mean squared error)

Only the new input rows learn (Adam, linear warm-up and decay); every weight, every old row and the LM head
stay bit for bit. Rows the text never shows keep their init (a zero gradient moves no Adam parameter). The
error before and after is measured on the last tenth of the windows, which are never trained on. The
documents are packed into one stream as pretraining packs them and cut into windows at aligned boundaries
of at most CONTEXT base tokens; the teacher's states are computed once, the student reads the windows
`epochs` times.

Compute (reported, with the count of tokens each pass reads): the teacher's forward pass over the base
tokens, and per epoch the student's forward and backward (activations only: no weight gradients) over
the merged tokens, plus one student forward over the held-out windows before and one after; 2 · parameters
FLOPs per token per pass, as `lm_head_calibration.py` counts. Runs on the GPU when torch sees one.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from stagekit.errors import BadInput

HELD_OUT_EVERY = 10  # one window in this many (the last ones) measures the error and is never trained on
CONTEXT = 512  # base tokens per window at most (the teacher's, the longer reading)


@dataclass(frozen=True)
class Window:
    """One stretch of text in both tokenizations, cut at aligned boundaries."""

    base_ids: list[int]
    merged_ids: list[int]
    base_positions: list[int]  # aligned boundaries, as positions in base_ids ...
    merged_positions: list[int]  # ... and the same boundaries in merged_ids


@dataclass(frozen=True)
class DistillationResult:
    rows: torch.Tensor  # the new input rows, float32
    documents: int
    skipped_documents: int  # whose two tokenizations do not spell the same bytes (left out)
    windows: int
    held_out_windows: int  # not trained on: the errors below are measured on them (0: on the trained windows)
    base_tokens: int  # teacher positions read
    merged_tokens: int  # student positions trained on per epoch
    aligned_positions: int  # hidden states matched per epoch
    epochs: int
    learning_rate: float
    flops: float
    seconds: float
    mse_before: float  # mean squared error per hidden unit, the init's rows (held-out windows)
    mse_after: float
    teacher_mean_square: float  # mean square of the teacher's states: the scale of the two above

    def summary(self) -> dict:
        return {
            "documents": self.documents, "skipped_documents": self.skipped_documents, "windows": self.windows,
            "held_out_windows": self.held_out_windows,
            "base_tokens": self.base_tokens, "merged_tokens": self.merged_tokens,
            "aligned_positions": self.aligned_positions, "epochs": self.epochs, "learning_rate": self.learning_rate,
            "flops": self.flops, "seconds": round(self.seconds, 3),
            "mse_before": _significant(self.mse_before), "mse_after": _significant(self.mse_after),
            "relative_error_before": _significant(self.mse_before / self.teacher_mean_square),
            "relative_error_after": _significant(self.mse_after / self.teacher_mean_square),
        }


def _significant(value: float) -> float:
    return float(f"{value:.6g}")


def aligned_boundaries(base_ends: np.ndarray, merged_ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions in each sequence after which both have read the same bytes (> 0), one pair per byte offset.

    `*_ends`: cumulative bytes read after each position (non-decreasing); where tokens of zero bytes
    repeat an offset, the last position holding it is taken."""
    def last_of_each(ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        last = np.flatnonzero(np.append(ends[1:] != ends[:-1], True))
        return ends[last], last

    base_offsets, base_last = last_of_each(base_ends)
    merged_offsets, merged_last = last_of_each(merged_ends)
    _, in_base, in_merged = np.intersect1d(base_offsets, merged_offsets, assume_unique=True, return_indices=True)
    keep = base_offsets[in_base] > 0
    return base_last[in_base][keep], merged_last[in_merged][keep]


def cut_windows(base_ids: list[int], merged_ids: list[int], base_bytes: np.ndarray, merged_bytes: np.ndarray,
                context: int) -> list[Window] | None:
    """Windows of one text's two tokenizations, each at most `context` base tokens (more only where no boundary
    comes sooner) and ending at an aligned boundary; None when the two do not spell the same number of bytes."""
    base_ends = np.cumsum(base_bytes[base_ids])
    merged_ends = np.cumsum(merged_bytes[merged_ids])
    if not len(base_ends) or not len(merged_ends) or base_ends[-1] != merged_ends[-1]:
        return None
    base_cuts, merged_cuts = aligned_boundaries(base_ends, merged_ends)
    windows, base_start, merged_start, k = [], 0, 0, 0
    while k < len(base_cuts):
        end = k  # the last aligned boundary that keeps the window within `context` base tokens (at least one)
        while end + 1 < len(base_cuts) and base_cuts[end + 1] - base_start < context:
            end += 1
        base_stop, merged_stop = int(base_cuts[end]) + 1, int(merged_cuts[end]) + 1
        windows.append(Window(
            base_ids=base_ids[base_start:base_stop], merged_ids=merged_ids[merged_start:merged_stop],
            base_positions=[int(p) - base_start for p in base_cuts[k:end + 1]],
            merged_positions=[int(p) - merged_start for p in merged_cuts[k:end + 1]],
        ))
        base_start, merged_start, k = base_stop, merged_stop, end + 1
    return windows


def distillation_windows(documents: Iterable[str], base_encoder, merged_encoder, max_tokens: int, context: int
                         ) -> tuple[list[Window], int, int]:
    """Windows over `documents` packed into one stream as pretraining packs them (BOS first where the tokenizers
    have one, else EOS after each), until `max_tokens` merged tokens; (windows, documents used, documents skipped).
    Packing keeps windows near `context` base tokens however short the documents (one forward pass per window)."""
    base_bytes, merged_bytes = base_encoder.byte_lengths(), merged_encoder.byte_lengths()
    documents = list(documents)
    base_stream: list[int] = []
    merged_stream: list[int] = []
    used = skipped = 0
    for i in range(0, len(documents), 256):  # encoded a batch at a time: a large file is read only as far as needed
        if len(merged_stream) >= max_tokens:
            break
        batch = documents[i:i + 256]
        for base_ids, merged_ids in zip(base_encoder.encode_batch(batch), merged_encoder.encode_batch(batch)):
            used += 1
            base_ids, merged_ids = _delimited(base_encoder, base_ids), _delimited(merged_encoder, merged_ids)
            if base_bytes[base_ids].sum() != merged_bytes[merged_ids].sum():  # not one text: left out
                skipped += 1
                continue
            base_stream += base_ids
            merged_stream += merged_ids
            if len(merged_stream) >= max_tokens:
                break
    windows, tokens = [], 0
    for window in cut_windows(base_stream, merged_stream, base_bytes, merged_bytes, context) or []:
        if tokens >= max_tokens:
            break
        windows.append(window)
        tokens += len(window.merged_ids)
    return windows, used, skipped


def _delimited(encoder, ids: list[int]) -> list[int]:
    if encoder.bos_id >= 0:
        return [encoder.bos_id, *ids]
    return [*ids, encoder.eos_id] if encoder.eos_id >= 0 else list(ids)


def split_windows(windows: list[Window]) -> tuple[list[Window], list[Window]]:
    """(trained on, the error measured on): the last tenth of the windows is held out; with fewer than
    ten windows the error is measured on the trained ones."""
    held_out = len(windows) // HELD_OUT_EVERY
    return (windows[:-held_out], windows[-held_out:]) if held_out else (windows, windows)


def distill_input_rows(model, windows: list[Window], new: range, epochs: int, learning_rate: float, seed: int = 0,
                       progress: bool = False) -> tuple[torch.Tensor, float, float, float]:
    """Train the input rows `new` of `model` (a Hugging Face causal LM, frozen) on `windows` (split_windows):
    (rows float32, MSE before, MSE after, the teacher states' mean square), errors on the measured windows."""
    from tqdm import tqdm

    for parameter in model.parameters():
        parameter.requires_grad_(False)
    decoder = model.base_model  # LlamaModel / Qwen2Model: last_hidden_state is after the final norm
    table = model.get_input_embeddings().weight
    device = table.device
    trained, measured = split_windows(windows)
    unique = list({id(w): w for w in trained + measured}.values())
    with torch.no_grad():
        targets = {id(w): decoder(input_ids=torch.tensor([w.base_ids], device=device)).last_hidden_state[0, w.base_positions]
                   .float() for w in tqdm(unique, desc="teacher", disable=not progress, leave=False)}
    rows = table[new.start:new.stop].detach().float().clone().requires_grad_(True)

    def student_loss(window: Window) -> torch.Tensor:
        # The frozen table's rows, with the trained ones at new ids (no copy of the whole table per step).
        ids = torch.tensor([window.merged_ids], device=device)
        embedded = torch.nn.functional.embedding(ids, table)
        if len(new):
            is_new = ((ids >= new.start) & (ids < new.stop))[..., None]
            embedded = torch.where(is_new, rows[(ids - new.start).clamp(0, len(new) - 1)].to(table.dtype), embedded)
        states = decoder(inputs_embeds=embedded).last_hidden_state
        return torch.nn.functional.mse_loss(states[0, window.merged_positions].float(), targets[id(window)])

    def mean_error() -> float:
        with torch.no_grad():
            total = sum(float(student_loss(w)) * len(w.merged_positions) for w in measured)
        return total / sum(len(w.merged_positions) for w in measured)

    before = mean_error()
    optimizer = torch.optim.Adam([rows], lr=learning_rate)
    steps = epochs * len(trained)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (steps - step) / max(1, steps - warmup))))
    order = random.Random(seed)
    with tqdm(total=steps, desc="distilling input rows", disable=not progress, leave=False) as bar:
        for _ in range(epochs):
            for window in order.sample(trained, len(trained)):
                loss = student_loss(window)
                loss.backward()
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                bar.update()
                bar.set_postfix(mse=f"{loss.item():.4f}", refresh=False)
    after = mean_error()
    teacher_square = float(sum(targets[id(w)].pow(2).sum() for w in measured)
                           / sum(targets[id(w)].numel() for w in measured))
    return rows.detach(), before, after, teacher_square


def distill(model_dir, base_tokenizer, new: range, documents: list[str], source, max_tokens: int, epochs: int,
            learning_rate: float, seed: int = 0, progress: bool = False) -> DistillationResult:
    """Load the resized model at `model_dir` (its merged tokenizer beside it) and distill the input rows `new`
    on `documents` (read from `source`, which error messages name), the teacher reading them through
    `base_tokenizer` (the base model's tokenizer directory or file)."""
    from transformers import AutoModelForCausalLM

    from tokenizer.token_encoder import TokenEncoder

    started = time.perf_counter()
    base_encoder, merged_encoder = TokenEncoder.load(base_tokenizer), TokenEncoder.load(model_dir)
    windows, used, skipped = distillation_windows(documents, base_encoder, merged_encoder, max_tokens, CONTEXT)
    if not windows:
        raise BadInput(f"{source}: no text to distill the new input rows on"
                       + (f" ({skipped} documents spell different bytes in the two tokenizers)" if skipped else ""))
    cuda = torch.cuda.is_available()
    # On the CPU in float32 (the backward pass needs it there); on a GPU in the stored dtype.
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype="auto" if cuda else torch.float32).eval()
    if cuda:
        model = model.cuda()
    torch.manual_seed(seed)
    rows, before, after, teacher_square = distill_input_rows(model, windows, new, epochs, learning_rate, seed, progress)
    if not torch.isfinite(rows).all() or math.isnan(after):
        raise BadInput("the input-row distillation diverged (non-finite rows); try a smaller learning rate")
    parameters = sum(p.numel() for p in model.parameters())
    trained, measured = split_windows(windows)
    trained_tokens = sum(len(w.merged_ids) for w in trained)
    # The teacher's forward pass once; the student's forward and backward per epoch, and a forward before and after.
    passes = sum(len(w.base_ids) for w in windows) + 2 * epochs * trained_tokens + 2 * sum(len(w.merged_ids) for w in measured)
    return DistillationResult(
        rows=rows.cpu(), documents=used, skipped_documents=skipped, windows=len(windows),
        held_out_windows=len(windows) - len(trained), base_tokens=sum(len(w.base_ids) for w in windows),
        merged_tokens=trained_tokens, aligned_positions=sum(len(w.merged_positions) for w in trained), epochs=epochs,
        learning_rate=learning_rate, flops=2.0 * parameters * passes, seconds=time.perf_counter() - started,
        mse_before=before, mse_after=after, teacher_mean_square=teacher_square,
    )
