"""Check a GGUF with llama.cpp itself (through llama-cpp-python) against the Hugging Face model it came from.

- token ids: llama.cpp's tokenizer vs SentencePiece (for a byte-level BPE model: the HF tokenizer) on `tokenizer/comparison.py`'s probes (Korean, English, code,
  leading/double spaces, tabs, emoji, NFD Hangul), each also right after BOS, plus the given texts;
- next-token log-probabilities: llama.cpp vs the HF model (float32) at every position of a few Korean and
  English prompts; the largest absolute difference must be within the tolerance of the GGUF's tensor type
  (f32: 1e-3 nats; f16/bf16/q8_0 are reported, with a looser bound that still catches a wrong conversion);
- the vocabulary size: GGUF tokens == the model's embedding rows >= tokenizer ids (rows past the ids: [PAD] tokens
  the export checked were expected, Qwen2's or resize's padding).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from serving import BadInput

PROMPTS = ["대한민국의 수도는 서울이고, 가장 큰 항구 도시는", "옛날 옛적에 한 마을에 착한 나무꾼이 살았습니다.",
           "The capital of France is Paris, and the largest city in Germany is", "def fibonacci(n):\n    return"]
# Largest |log p_llama.cpp - log p_HF| allowed, by the GGUF's tensor type (nats).
TOLERANCE = {"f32": 1e-3, "f16": 0.05, "bf16": 0.2, "q8_0": 0.2}


def llama_cpp_available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def file_type(llm) -> str:
    ftype = int(llm.metadata.get("general.file_type", -1))
    return {0: "f32", 1: "f16", 7: "q8_0", 32: "bf16"}.get(ftype, str(ftype))


class HFIds:
    """The reference ids of a byte-level model (tokenizer.json, no tokenizer.model), shaped like the
    SentencePieceProcessor calls used here: the Hugging Face tokenizer's ids, its BOS only where it adds one."""

    def __init__(self, model_dir: Path):
        from transformers import AutoTokenizer

        self.hf = AutoTokenizer.from_pretrained(model_dir)
        probe = self.hf.encode("a", add_special_tokens=True)
        self.adds_bos = self.hf.bos_token_id is not None and probe[:1] == [self.hf.bos_token_id]

    def encode(self, lines: list[str]) -> list[list[int]]:
        return self.hf(list(lines), add_special_tokens=False)["input_ids"] if lines else []

    def bos_id(self) -> int:
        return self.hf.bos_token_id if self.adds_bos else -1

    def get_piece_size(self) -> int:
        return len(self.hf)


def compare_token_ids(llm, sp, texts: dict[str, list[str]]) -> dict:
    bos = sp.bos_id()
    rows, disagreements = 0, []
    for kind, lines in texts.items():
        for text, want in zip(lines, sp.encode(lines)):
            for add_bos in (False, True):
                got = llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=False)
                expected = ([bos] if add_bos and bos >= 0 else []) + want
                rows += 1
                if list(got) != expected:
                    disagreements.append({"kind": kind + (" (after BOS)" if add_bos else ""), "text": text,
                                          "sentencepiece": expected, "llama_cpp": list(got)})
    return {"encodings": rows, "disagreements": disagreements}


def compare_log_probs(gguf: Path, model_dir: Path, sp, prompts: list[str]) -> dict:
    import llama_cpp
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    ids = [([sp.bos_id()] if sp.bos_id() >= 0 else []) + ids for ids in sp.encode(prompts)]
    # KV cache in float32 (GGML type 0), not llama.cpp's default f16: the check measures the conversion; on
    # SmolLM2-135M the f16 cache alone moves log-probabilities by ~0.02 nats (4e-5 with float32).
    llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=max(map(len, ids)) + 8, logits_all=True, verbose=False,
                          n_threads=2, seed=0, type_k=0, type_v=0)
    worst, per_prompt = 0.0, []
    for prompt, tokens in zip(prompts, ids):
        with torch.inference_mode():
            reference = torch.log_softmax(hf(torch.tensor([tokens])).logits[0].double(), -1).numpy()
        llm.reset()
        llm.eval(tokens)
        logits = np.asarray(llm.scores[: len(tokens)], dtype=np.float64)
        ours = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
        diff = float(np.abs(ours - reference).max())
        per_prompt.append({"prompt": prompt, "tokens": len(tokens), "max_abs_diff": diff,
                           "same_argmax": bool((ours.argmax(-1) == reference.argmax(-1)).all())})
        worst = max(worst, diff)
    return {"max_abs_diff": worst, "prompts": per_prompt, "file_type": file_type(llm)}


def check_gguf(gguf: str | Path, model_dir: str | Path, text_files: list[str] = (), max_lines: int = 500) -> dict:
    if not llama_cpp_available():
        raise BadInput("llama-cpp-python is not installed (pip install 'kocpt[gguf]')")
    import json

    import llama_cpp
    import sentencepiece as spm

    from tokenizer.comparison import PROBES_BY_KIND as PROBES
    from tokenizer.comparison import read_lines
    from tokenizer.family import SENTENCEPIECE, family_of

    gguf, model_dir = Path(gguf), Path(model_dir)
    if not gguf.is_file():
        raise BadInput(f"{gguf}: no such GGUF file")
    family = family_of(model_dir)
    if family.name == SENTENCEPIECE:
        sp, reference = spm.SentencePieceProcessor(model_file=str(family.tokenizer_file(model_dir))), "SentencePiece"
    else:
        sp, reference = HFIds(model_dir), "tokenizer.json"  # byte-level BPE: Hugging Face's ids are the reference
    texts = dict(PROBES)
    for file in text_files:
        texts[f"file {file}"] = read_lines(file, max_lines)
    vocab_llm = llama_cpp.Llama(model_path=str(gguf), vocab_only=True, verbose=False)
    rows = int(json.loads((model_dir / "config.json").read_text())["vocab_size"])
    report = {"gguf": str(gguf), "model": str(model_dir), "llama_cpp_python": llama_cpp.__version__, "reference": reference,
              "vocab": {"gguf": vocab_llm.n_vocab(), "tokenizer_model": sp.get_piece_size(), "model_rows": rows},
              "ids": compare_token_ids(vocab_llm, sp, texts),
              "log_probs": compare_log_probs(gguf, model_dir, sp, PROMPTS)}
    kind = report["log_probs"]["file_type"]
    report["log_probs"]["tolerance"] = TOLERANCE.get(kind)
    defects = []
    vocab = report["vocab"]  # rows past the tokenizer's ids are [PAD] tokens, which export checked were expected
    if vocab["gguf"] != vocab["model_rows"] or vocab["tokenizer_model"] > vocab["model_rows"]:
        defects.append(f"vocabulary sizes differ: {report['vocab']}")
    if report["ids"]["disagreements"]:
        defects.append(f"llama.cpp ids differ from {reference} on {len(report['ids']['disagreements'])} of "
                       f"{report['ids']['encodings']} encodings")
    tolerance = report["log_probs"]["tolerance"]
    if tolerance is not None and report["log_probs"]["max_abs_diff"] > tolerance:
        defects.append(f"log-probabilities differ from the HF model by {report['log_probs']['max_abs_diff']:.3g} "
                       f"> {tolerance:g} ({kind})")
    report["defects"] = defects
    return report


def summary_lines(report: dict) -> list[str]:
    ids, log_probs, vocab, reference = report["ids"], report["log_probs"], report["vocab"], report["reference"]
    lines = [f"llama.cpp (llama-cpp-python {report['llama_cpp_python']}) on {report['gguf']}:",
             f"  vocabulary: GGUF {vocab['gguf']:,}, tokenizer {vocab['tokenizer_model']:,}, model rows {vocab['model_rows']:,}",
             f"  token ids == {reference} on {ids['encodings'] - len(ids['disagreements'])} of {ids['encodings']} encodings"]
    lines += [f"    {d['kind']}: {d['text']!r}: {reference} {d['sentencepiece']} llama.cpp {d['llama_cpp']}"
              for d in ids["disagreements"]]
    lines.append(f"  next-token log-probabilities vs the HF model ({log_probs['file_type']}): max |diff| "
                 f"{log_probs['max_abs_diff']:.3g} nats over {sum(p['tokens'] for p in log_probs['prompts'])} positions"
                 + (f" (tolerance {log_probs['tolerance']:g})" if log_probs["tolerance"] is not None else ""))
    lines.append("  defects: " + ("; ".join(report["defects"]) if report["defects"] else "none"))
    return lines
