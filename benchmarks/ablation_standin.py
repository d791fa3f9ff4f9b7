"""The ablation's data, training loop and stand-in model ("Llama-2 before the Korean continuation").

Llama-2 saw a little Korean (0.06% of its pretraining, ~1.2B tokens): its byte rows for Hangul are
trained. The stand-in copies that: a small Llama pretrained with the base tokenizer on English
(Tiny Shakespeare) plus a small Korean share taken from the *dev* splits of KorNLI and KorSTS
(`xnli.dev.ko.tsv`, `sts-dev.tsv`), which no evaluation task scores (they read the test splits) and
which share no source with ko-train (the continuation's data) or ko-heldout (Korean bits per
character). A twin with no Korean, same settings otherwise, shows what the Korean share buys.

Both are cached under the cache directory keyed by a hash of their settings and inputs, so reruns
start at the continuation.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from evaluation.bpc import score_texts
from stagekit.paths import EN_SHAKESPEARE, KO_EVAL, LLAMA2_TOKENIZER, REPO

STANDIN_KOREAN = (KO_EVAL / "kor_nlu" / "KorNLI" / "xnli.dev.ko.tsv", KO_EVAL / "kor_nlu" / "KorSTS" / "sts-dev.tsv")
DEFAULT_CACHE = Path(os.environ.get("KOCPT_CACHE", Path.home() / ".cache" / "kocpt")) / "ablation"


@dataclass(frozen=True)
class ModelShape:
    hidden: int = 64
    layers: int = 2
    heads: int = 4
    seq: int = 64
    batch: int = 8


@dataclass(frozen=True)
class StandinSettings:
    shape: ModelShape
    steps: int = 300
    korean_share: float = 0.05  # share of training windows drawn from the Korean text
    lr: float = 3e-3
    seed: int = 1234


def lines(path: Path, limit: int | None = None) -> list[str]:
    out = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return out[:limit] if limit else out


def standin_korean_sentences() -> list[str]:
    """Unique sentences of the KorNLI and KorSTS dev splits (premises repeat in XNLI: kept once)."""
    seen: dict[str, None] = {}
    for path in STANDIN_KOREAN:
        with path.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
                for key in ("sentence1", "sentence2"):
                    text = (row.get(key) or "").strip()
                    if text:
                        seen.setdefault(text)
    return list(seen)


def token_stream(tokenizer, texts: list[str]) -> torch.Tensor:
    """All texts as one id sequence, each document after a BOS (as the evaluation scores them)."""
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return torch.tensor([tid for ids in encoded for tid in (tokenizer.bos_token_id, *ids)], dtype=torch.long)


def blended_batches(streams: list[torch.Tensor], shares: list[float], shape: ModelShape, steps: int, seed: int):
    """`steps` batches of [batch, seq+1] windows; each window comes from stream i with probability shares[i]."""
    generator = torch.Generator().manual_seed(seed)
    window = shape.seq + 1
    weights = torch.tensor(shares, dtype=torch.float)
    for _ in range(steps):
        sources = torch.multinomial(weights, shape.batch, replacement=True, generator=generator)
        rows = []
        for source in sources.tolist():
            stream = streams[source]
            start = int(torch.randint(0, len(stream) - window, (1,), generator=generator))
            rows.append(stream[start : start + window])
        yield torch.stack(rows)


def lm_loss(model, batch: torch.Tensor) -> torch.Tensor:
    logits = model(input_ids=batch[:, :-1]).logits
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))


def train(model, batches, steps: int, lr: float, *, trainable=None, keep_rows: int = 0, on_step=None) -> None:
    """AdamW with warmup (10%) and cosine decay. `keep_rows`: embedding/LM-head rows below it are
    restored after every step (a new-rows-only stage: only the new vocabulary's rows move)."""
    named = [(n, p) for n, p in model.named_parameters() if trainable is None or trainable(n)]
    params = [p for _, p in named]
    # No weight decay while rows are pinned: decay would move the pinned rows between restores.
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0 if keep_rows else 0.01, betas=(0.9, 0.95))
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    pinned = {n: p.detach()[:keep_rows].clone() for n, p in named if keep_rows and p.dim() == 2 and p.shape[0] > keep_rows}
    model.train()
    for step, batch in zip(range(1, steps + 1), batches):
        loss = lm_loss(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if pinned:
            with torch.no_grad():
                for n, p in named:
                    if n in pinned:
                        p[:keep_rows] = pinned[n]
        if on_step:
            on_step(step, loss.item())


def evaluate(model, tokenizer, ko_docs: list[str], en_docs: list[str]) -> dict:
    ko = score_texts(model, tokenizer, ko_docs, name="ko", progress=False, context=256)
    en = score_texts(model, tokenizer, en_docs, name="en", progress=False, context=256)
    return {"ko_bpc": ko.bits_per_char, "en_bpc": en.bits_per_char, "ko_tokens_per_char": ko.tokens / ko.characters}


def flops_per_token(model) -> float:
    """6 x parameters that do matrix work per token (the input embedding lookup does not)."""
    return 6.0 * sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" not in n)


def file_key(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def settings_hash(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def hf_tokenizer(directory: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(directory))


def _publish(tmp: Path, final: Path) -> None:
    """Rename a finished directory into place (a crash leaves only a .tmp directory, never a half cache)."""
    if final.exists():
        shutil.rmtree(tmp)
    else:
        os.replace(tmp, final)


def base_tokenizer_dir(cache: Path, base: Path = LLAMA2_TOKENIZER) -> Path:
    """The base tokenizer as a Hugging Face directory (the project's own export)."""
    from sentencepiece import sentencepiece_model_pb2

    from tokenizer.spm_hf_export import write_hf_files

    out = cache / f"tok-base-{file_key(base)}"
    if not (out / "tokenizer.json").is_file():
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        shutil.copy(base, tmp / "tokenizer.model")
        proto = sentencepiece_model_pb2.ModelProto()
        proto.ParseFromString(base.read_bytes())
        write_hf_files(proto, tmp)
        _publish(tmp, out)
    return out


def merged_tokenizer_dir(cache: Path, korean_dir: Path, vocab: int, base: Path = LLAMA2_TOKENIZER) -> Path:
    """Base + Korean pieces, through the tokenizer stage's own commands (train, then safe merge)."""
    out = cache / f"tok-merged-{settings_hash({'base': file_key(base), 'korean': str(korean_dir), 'vocab': vocab})}"
    if not (out / "tokenizer.json").is_file():
        work = out.with_name(out.name + ".tmp")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        run = [sys.executable]
        subprocess.run([*run, REPO / "tokenizer" / "train.py", "--input", korean_dir, "--output", work / "ko",
                        "--vocab-size", str(vocab)], check=True, cwd=REPO, stdout=subprocess.DEVNULL)
        subprocess.run([*run, REPO / "tokenizer" / "merge.py", "--base", base, "--add", work / "ko.model",
                        "--output", work / "merged", "--no-plot"], check=True, cwd=REPO, stdout=subprocess.DEVNULL)
        os.replace(work / "merged", out)
        shutil.rmtree(work)
    return out


def pretrain_standin(cache: Path, settings: StandinSettings, base_tok, log=print) -> tuple[Path, dict]:
    """The cached stand-in for `settings` (trained here the first time), and its cache record."""
    from transformers import LlamaConfig, LlamaForCausalLM

    korean_files = {str(p): file_key(p) for p in STANDIN_KOREAN} if settings.korean_share > 0 else {}
    key_fields = {"settings": asdict(settings), "english": file_key(EN_SHAKESPEARE), "korean": korean_files,
                  "tokenizer": file_key(LLAMA2_TOKENIZER), "torch": torch.__version__}
    out = cache / f"standin-{settings_hash(key_fields)}"
    record = {"dir": str(out), "key": key_fields, "cached": (out / "config.json").is_file()}
    if record["cached"]:
        log(f"stand-in (Korean share {settings.korean_share:.0%}): cached at {out}")
        return out, record
    shape = settings.shape
    torch.manual_seed(settings.seed)
    config = LlamaConfig(vocab_size=len(base_tok), hidden_size=shape.hidden, intermediate_size=shape.hidden * 8 // 3,
                         num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
                         num_key_value_heads=shape.heads, max_position_embeddings=512, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    streams = [token_stream(base_tok, lines(EN_SHAKESPEARE))]
    shares = [1.0 - settings.korean_share]
    if settings.korean_share > 0:
        streams.append(token_stream(base_tok, standin_korean_sentences()))
        shares.append(settings.korean_share)
    log(f"pretraining the stand-in (Korean share {settings.korean_share:.0%}): {settings.steps} steps")
    every = max(1, settings.steps // 5)
    train(model, blended_batches(streams, shares, shape, settings.steps, settings.seed), settings.steps, settings.lr,
          on_step=lambda s, loss: log(f"  step {s:4d}/{settings.steps} loss {loss:.3f}") if s % every == 0 else None)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    shutil.copy(LLAMA2_TOKENIZER, tmp / "tokenizer.model")
    (tmp / "standin.json").write_text(json.dumps(key_fields, indent=2, default=str) + "\n")
    _publish(tmp, out)
    return out, record
