"""Padded vocabulary rows must never be generated nor enter the loss.

Megatron pads the vocabulary to a multiple of `make_vocab_size_divisible_by × TP` so that each
tensor-parallel rank holds an equal slice. Zero rows in the output layer are not enough: a zero
row gives logit 0, which beats the many real tokens whose logits are negative, takes probability
mass in the softmax (so the loss differs from the Hugging Face model's, and differs between TP=1
and TP=2 whenever their paddings differ), and then receives gradient and stops being zero.

So the logits of padded ids are masked: `mask_padded_vocab` registers a forward hook on the
output layer that fills their columns with the dtype's minimum. exp() of that is 0 in the
softmax, argmax and sampling never pick them, and `masked_fill` passes no gradient to those rows,
which therefore stay zero. The checkpoint stores the rows as zeros and `convert --to hf` drops
them, so the Hugging Face model has exactly the tokenizer's vocabulary.
"""

from __future__ import annotations

import torch


def padded_vocab_mask(vocab_start: int, local_vocab: int, vocab_size: int, device=None) -> torch.Tensor | None:
    """Boolean [local_vocab] mask of this rank's logit columns that are padding (None if none)."""
    ids = torch.arange(vocab_start, vocab_start + local_vocab, device=device)
    mask = ids >= vocab_size
    return mask if bool(mask.any()) else None


def mask_padded_vocab(model, vocab_size: int):
    """Hook this rank's output layer (if it has one) so padded ids get the minimum logit.

    Works at any TP: the output layer's columns on rank r are ids
    [r·V/TP, (r+1)·V/TP) of the padded vocabulary V (or all V when the output is gathered).
    Returns the hook handle (None on ranks without an output layer).
    """
    from megatron.core import parallel_state

    output_layer = getattr(model, "output_layer", None)
    if output_layer is None or not getattr(model, "post_process", True):
        return None
    tp_rank = parallel_state.get_tensor_model_parallel_rank()

    def hook(module, args, output):
        logits, bias = output
        local = logits.shape[-1]
        # A gathered output (runtime_gather_output, or TP=1) holds the whole padded vocabulary.
        start = 0 if local == module.output_size else tp_rank * local
        mask = padded_vocab_mask(start, local, vocab_size, device=logits.device)
        if mask is None:
            return output
        return logits.masked_fill(mask, torch.finfo(logits.dtype).min), bias

    return output_layer.register_forward_hook(hook)
