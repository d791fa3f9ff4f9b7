"""Models and tokenizers the evaluation tests build: the real Llama-2 tokenizer as a Hugging Face directory, tiny
Llama models beside it, and models whose next-token probabilities are set by hand.

The exported-style directory is what `kocpt checkpoints convert` hands to users: LlamaForCausalLM
(safetensors + config.json) whose vocabulary matches the tokenizer saved in the same folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from checkpoints.tiny_llama import tiny_llama_config, write_tiny_llama
from stagekit.paths import EN_HELDOUT, KO_TRAIN, LLAMA2_TOKENIZER


def write_llama2_hf_tokenizer(directory: Path) -> Path:
    """tokenizer.model + tokenizer.json + tokenizer_config.json (+ LICENSE) of the real Llama-2 tokenizer."""
    from tokenizer.spm_hf_export import write_hf_files
    from tokenizer.spm_model import load_model

    directory.mkdir(parents=True, exist_ok=True)
    write_hf_files(load_model(LLAMA2_TOKENIZER), directory)
    shutil.copy(LLAMA2_TOKENIZER, directory / "tokenizer.model")
    shutil.copy(LLAMA2_TOKENIZER.parent / "LICENSE", directory / "LICENSE")
    return directory


def write_exported_model(directory: Path, tokenizer_dir: Path, seed: int = 0, **config) -> Path:
    """A tiny random LlamaForCausalLM with the tokenizer's vocabulary, saved as an HF export would be."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(tiny_llama_config(vocab_size=len(tokenizer), **config))
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    shutil.copy(tokenizer_dir / "tokenizer.model", directory / "tokenizer.model")
    return directory


def context_free_llama(log_probs: list[float], hidden_size: int = 8):
    """A real LlamaForCausalLM whose next-token distribution is `softmax(log_probs)` whatever the context.

    Every token embeds to the same all-ones vector and the attention and MLP outputs are zeroed, so
    the residual stream stays all-ones; the final RMSNorm (eps so small that 1 + eps == 1 in float32)
    leaves it there, and lm_head row i = log_probs[i] / hidden_size gives logit i = log_probs[i].
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(log_probs), hidden_size=hidden_size, intermediate_size=16, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-12,
                         bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.model.embed_tokens.weight.fill_(1.0)
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.norm.weight.fill_(1.0)
        model.lm_head.weight.copy_(torch.tensor(log_probs, dtype=torch.float32)[:, None].expand(-1, hidden_size) / hidden_size)
    return model.eval()


def fast_tokenizer(vocab: dict[str, int], merges: list[tuple[str, str]]):
    """A Hugging Face fast tokenizer over `vocab` (no normalizer, no pre-tokenizer; BPE with `merges`)."""
    from tokenizers import Tokenizer
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(BPE(vocab=vocab, merges=merges, unk_token="<unk>"))
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def byte_level_dir(directory: Path, pre_tokenizer: str = "ByteLevel") -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    english = [line for line in EN_HELDOUT.read_text(encoding="utf-8").splitlines() if line.strip()][:200]
    tokenizer = Tokenizer(models.BPE())
    if pre_tokenizer == "ByteLevel":
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(english, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet() if pre_tokenizer == "ByteLevel" else []))
    directory.mkdir(parents=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>"}), encoding="utf-8")
    return directory


def llama2_tokenizer_with(directory: Path, pieces: list[str], score: float | None = None) -> Path:
    """A merged tokenizer as resize reads it: the real Llama-2 tokenizer.model with `pieces` appended, scored
    below every old piece (None) or at `score` (0.0: above them all, so they are read wherever they fit)."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    proto.ParseFromString(LLAMA2_TOKENIZER.read_bytes())
    lowest = min(p.score for p in proto.pieces)
    for k, piece in enumerate(pieces):
        proto.pieces.add(piece=piece, score=lowest - 1 - k if score is None else score,
                         type=pb.ModelProto.SentencePiece.NORMAL)
    directory.mkdir(parents=True)
    (directory / "tokenizer.model").write_bytes(proto.SerializeToString())
    (directory / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer"}))
    return directory


def tied_llama2_resize_inputs(root: Path, pieces: list[str], layers: int, text_lines: int,
                              score: float | None = None) -> dict:
    """What resize's fits read, tiny: a tied Llama with Llama-2's vocabulary and tokenizer (`root/tied`), a
    merged tokenizer adding `pieces` (llama2_tokenizer_with), and the first `text_lines` lines of ko-train's
    news comments as their text."""
    merged = llama2_tokenizer_with(root / "merged", pieces, score=score)
    config = tiny_llama_config(vocab_size=32000, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                               num_attention_heads=2, tie_word_embeddings=True)
    model = write_tiny_llama(root / "tied", config)
    shutil.copy(LLAMA2_TOKENIZER, model / "tokenizer.model")
    text = root / "korean.txt"
    with open(KO_TRAIN / "news_comments.txt", encoding="utf-8") as handle:
        text.write_text("".join(line for _, line in zip(range(text_lines), handle)), encoding="utf-8")
    return {"root": root, "merged": merged, "model": model, "text": text}
