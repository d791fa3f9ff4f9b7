"""Bits per character (and per UTF-8 byte) of a Hugging Face causal LM on a set of documents.

Perplexity per token cannot compare models with different vocabularies: a bigger vocabulary has
fewer, harder tokens. The probability a model gives to a *text* does not depend on how the text
was cut into tokens, so we report

    bits per character = sum over the text's tokens of -log2 p(token | left context) / characters
    bits per byte      = the same sum / UTF-8 bytes

summed over all documents (a micro-average: long documents weigh more), characters being Unicode
code points of the document as given (Korean in NFC: one syllable = one character).

What exactly is scored, per document:
- The text is tokenized without special tokens, then one prefix token is put in front: BOS, or
  EOS when the tokenizer has no BOS (what lm-eval's rolling log-likelihood does). The prefix is
  context only; every token of the text, including the first, is scored. No EOS is appended: we
  measure the text, not where documents end. (Llama's SentencePiece adds a dummy-prefix "▁"; it
  belongs to the text's tokens and is scored with them.)
- A document longer than the context is scored with a sliding window: windows of `context`
  tokens advance by `stride`; each token is scored exactly once, in the first window that holds
  it after the part already scored, so every token after the first window sees at least
  `context - stride` tokens of left context (stride = 1 would give each token the full context,
  at `context` times the cost; the default context // 2 is the usual compromise).

Works for any tokenizer with `__call__(texts, add_special_tokens=False)["input_ids"]`, so base
Llama-2, the resized model and the trained model sit in one table.

Small evaluation sets: every figure comes with its standard error, by a seeded bootstrap over
documents (the ratio of sums resampled, as the figure is computed); two models scored on the same
documents compare by a paired bootstrap of their difference (`paired_difference`), which is much
tighter than either error alone. A comparison between tokenizers is fair only on whole documents:
a window of N tokens holds ~3x more Korean characters for an expanded tokenizer, so
`windowed_documents` counts the documents that did not fit one window (0 = whole documents).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from corpus.documents import read_documents  # noqa: F401  (evaluation's reader of held-out text)
from evaluation import BadInput


@dataclass
class BpcResult:
    """Totals over one set of documents; the ratios are derived from them."""

    name: str
    documents: int
    characters: int
    bytes: int
    tokens: int  # scored tokens (the prefix token is not one)
    nll_nats: float  # total negative log-likelihood of the scored tokens
    context: int
    stride: int
    # Per document, in the order given (empty documents left out): its scored NLL and its characters.
    doc_nll_nats: list[float] = field(default_factory=list)
    doc_characters: list[int] = field(default_factory=list)
    windowed_documents: int = 0  # documents longer than one window (scored with less than their whole context)

    @property
    def bits(self) -> float:
        return self.nll_nats / math.log(2)

    @property
    def bits_per_char(self) -> float:
        return self.bits / max(self.characters, 1)

    @property
    def bits_per_byte(self) -> float:
        return self.bits / max(self.bytes, 1)

    @property
    def tokens_per_char(self) -> float:
        return self.tokens / max(self.characters, 1)

    @property
    def nll_per_token(self) -> float:
        return self.nll_nats / max(self.tokens, 1)

    @property
    def bits_per_char_se(self) -> float | None:
        """Bootstrap standard error over documents (None without per-document figures)."""
        return bootstrap_se(self.doc_nll_nats, self.doc_characters)

    def to_dict(self) -> dict:
        return {**asdict(self), "bits_per_char": self.bits_per_char, "bits_per_char_se": self.bits_per_char_se,
                "bits_per_byte": self.bits_per_byte, "tokens_per_char": self.tokens_per_char,
                "nll_per_token": self.nll_per_token, "token_perplexity": math.exp(min(self.nll_per_token, 700.0))}


BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0  # fixed: the same documents give the same error bar on every run


def _resampled_bits_per_char(nll: np.ndarray, characters: np.ndarray, seed: int) -> np.ndarray:
    """Bits per character (a ratio of sums) of BOOTSTRAP_RESAMPLES resamples of the documents with replacement;
    the rows of `nll` are models scored on the same documents (the same resamples for each)."""
    picks = np.random.default_rng(seed).integers(0, characters.shape[-1], size=(BOOTSTRAP_RESAMPLES, characters.shape[-1]))
    return nll[..., picks].sum(-1) / math.log(2) / characters[picks].sum(-1)


def bootstrap_se(doc_nll_nats, doc_characters, seed: int = BOOTSTRAP_SEED) -> float | None:
    """Standard error of bits per character over documents; None for fewer than 2 documents."""
    if len(doc_characters) < 2 or len(doc_nll_nats) != len(doc_characters):
        return None
    samples = _resampled_bits_per_char(np.asarray(doc_nll_nats, float), np.asarray(doc_characters, float), seed)
    return float(samples.std(ddof=1))


def paired_difference(a: BpcResult | dict, b: BpcResult | dict, seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """(bits/char of a - bits/char of b, its paired bootstrap standard error): both scored on the same documents
    (results or their to_dict()); BadInput when the documents differ."""
    def per_document(result):
        get = result.get if isinstance(result, dict) else lambda key: getattr(result, key)
        return np.asarray(get("doc_nll_nats"), float), np.asarray(get("doc_characters"), float)

    (nll_a, chars_a), (nll_b, chars_b) = per_document(a), per_document(b)
    if len(chars_a) < 2 or chars_a.shape != chars_b.shape or not np.array_equal(chars_a, chars_b):
        raise BadInput("a paired difference needs both models scored on the same documents (2 or more)")
    gap = (nll_a.sum() - nll_b.sum()) / math.log(2) / chars_a.sum()
    samples = _resampled_bits_per_char(np.stack([nll_a, nll_b]), chars_a, seed)
    return float(gap), float((samples[0] - samples[1]).std(ddof=1))


@dataclass(frozen=True)
class Window:
    """Tokens ids[start:end] go through the model; targets ids[first:end] are scored."""

    doc: int
    start: int
    end: int
    first: int


def sliding_windows(length: int, context: int, stride: int, doc: int = 0) -> list[Window]:
    """Windows over a sequence of `length` ids (prefix included) that score ids[1:] once each."""
    if context < 2 or not 1 <= stride < context:
        raise BadInput(f"need context >= 2 and 1 <= stride < context (got context={context}, stride={stride})")
    end = min(context, length)
    windows = [Window(doc, 0, end, 1)]
    while end < length:
        new_end = min(end + stride, length)
        windows.append(Window(doc, new_end - context, new_end, end))
        end = new_end
    return windows


def prefix_token_id(tokenizer) -> int:
    for name in ("bos_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    raise BadInput(f"tokenizer {type(tokenizer).__name__} has neither a BOS nor an EOS token to start documents with")


def model_context(model) -> int:
    config = model.config
    for name in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 1:
            return value
    return 2048


def _batches(windows: list[Window], max_batch_tokens: int) -> list[list[Window]]:
    """Longest first, so padding stays small and the first batch shows the worst-case memory."""
    ordered = sorted(windows, key=lambda w: w.end - w.start, reverse=True)
    batches: list[list[Window]] = []
    for window in ordered:
        if batches:
            batch = batches[-1]
            width = batch[0].end - batch[0].start  # the batch's longest window
            if width * (len(batch) + 1) <= max_batch_tokens:
                batch.append(window)
                continue
        batches.append([window])
    return batches


@torch.inference_mode()
def score_texts(
    model,
    tokenizer,
    texts: list[str],
    *,
    name: str = "",
    context: int | None = None,
    stride: int | None = None,
    max_batch_tokens: int = 4096,
    progress: bool = True,
) -> BpcResult:
    """Bits per character/byte of `model` on `texts` (one document each; empty ones are skipped)."""
    texts = [t for t in texts if t]
    if not texts:
        raise BadInput(f"{name or 'texts'}: no non-empty documents to score")
    context = context or model_context(model)
    stride = stride or max(1, context // 2)
    prefix = prefix_token_id(tokenizer)
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    sequences = [[prefix, *ids] for ids in encoded]
    vocab = model.get_output_embeddings().weight.shape[0]
    top = max(max(seq) for seq in sequences)
    if top >= vocab:
        raise BadInput(f"{name or 'texts'}: the tokenizer produces id {top} but the model has only {vocab} "
                       "output rows (wrong tokenizer for this model?)")

    windows = [w for i, seq in enumerate(sequences) for w in sliding_windows(len(seq), context, stride, i)
               if w.end > w.first]  # an empty text after tokenization has nothing to score
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    doc_nll = torch.zeros(len(sequences), dtype=torch.float64)
    scored = 0
    try:
        for batch in tqdm(_batches(windows, max_batch_tokens), desc=f"bits/char {name}".strip(), unit="batch",
                          disable=not progress, leave=False):
            width = max(w.end - w.start for w in batch)
            input_ids = torch.zeros((len(batch), width), dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            targets = torch.zeros((len(batch), width - 1), dtype=torch.long)
            mask = torch.zeros((len(batch), width - 1), dtype=torch.bool)
            for row, w in enumerate(batch):
                ids = torch.tensor(sequences[w.doc][w.start:w.end])
                n = len(ids)
                input_ids[row, :n] = ids
                attention[row, :n] = 1
                targets[row, : n - 1] = ids[1:]
                # logits at window position t predict position t + 1: score targets first..end-1
                mask[row, w.first - w.start - 1: n - 1] = True
            logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits[:, :-1]
            log_probs = torch.log_softmax(logits.float(), dim=-1)
            token_nll = -log_probs.gather(-1, targets.to(device).unsqueeze(-1)).squeeze(-1)
            per_row = torch.where(mask.to(device), token_nll.double(), 0.0).sum(-1).cpu()  # padding may be inf
            doc_nll.index_add_(0, torch.tensor([w.doc for w in batch]), per_row)
            scored += int(mask.sum())
    finally:
        model.train(was_training)

    expected = sum(len(seq) - 1 for seq in sequences)
    assert scored == expected, f"scored {scored} tokens, expected {expected}"  # every token exactly once
    return BpcResult(
        name=name, documents=len(texts), characters=sum(len(t) for t in texts),
        bytes=sum(len(t.encode("utf-8")) for t in texts), tokens=scored, nll_nats=float(doc_nll.sum()),
        context=context, stride=stride, doc_nll_nats=doc_nll.tolist(), doc_characters=[len(t) for t in texts],
        windowed_documents=sum(1 for seq in sequences if len(seq) > context),
    )
