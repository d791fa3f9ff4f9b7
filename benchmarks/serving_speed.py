"""What expansion saves where models are served: Korean characters per second in llama.cpp, expanded vs not.

    python -m benchmarks.serving_speed --expanded /tmp/smol/resized-fvt --output benchmarks/results/serving-speed.json

Both models (default: SmolLM2-135M-Instruct, the base, against `--expanded`, a resized model of it) are
exported with `kocpt export gguf` at the same `--outtype`, then loaded by llama.cpp (llama-cpp-python, the
pinned release) with the same threads and context. Two figures per model, each the median of `--repeats`:
- prompt processing: held-out Korean documents (ko-heldout news) evaluated in one batch each; characters
  of the documents / seconds;
- generation: `--new-tokens` tokens generated greedily (llama.cpp's sampler, top-k 1) after a Korean
  prompt; characters of the generated text / seconds (prompt included; the model decides how much
  text a token is: that is the saving being measured).
Prints a table, writes JSON. A model's quality is measured elsewhere (benchmarks/smollm2.py); this is cost.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from benchmarks.result_file import write_result
from stagekit.paths import KO_HELDOUT, REPO

PROMPT = "서울의 봄은 언제나 짧다. 벚꽃이 피었다가 지는 동안 사람들은"


def export_gguf(model: Path, out: Path, outtype: str) -> Path:
    """Exported anew every run: a GGUF kept from an earlier run may be of another model."""
    from serving.gguf_export import export

    export(model, out, outtype=outtype, overwrite=True)
    return out


def measure(gguf: Path, documents: list[str], new_tokens: int, repeats: int, threads: int) -> dict:
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=2048, n_batch=2048, n_threads=threads,
                          n_threads_batch=threads, verbose=False)
    prompt_rates, prompt_tokens, prompt_chars = [], 0, 0
    for _ in range(repeats):
        tokens = chars = 0
        started = time.perf_counter()
        for text in documents:
            ids = llm.tokenize(text.encode("utf-8"), add_bos=True)[:2048]
            llm.reset()
            llm.eval(ids)
            tokens += len(ids)
            chars += len(text)
        prompt_rates.append(chars / (time.perf_counter() - started))
        prompt_tokens, prompt_chars = tokens, chars
    generation_rates, token_rates, generated = [], [], ""
    prompt_ids = llm.tokenize(PROMPT.encode("utf-8"), add_bos=True)
    for _ in range(repeats):
        llm.reset()
        tokens = []
        started = time.perf_counter()
        # llama.cpp's own sampling loop, greedy; exactly `new_tokens` tokens (an EOS does not stop it early).
        for token in llm.generate(prompt_ids, top_k=1, temp=0.0):
            tokens.append(token)
            if len(tokens) == new_tokens:
                break
        seconds = time.perf_counter() - started
        generated = llm.detokenize(tokens).decode("utf-8", errors="replace")
        generation_rates.append(len(generated) / seconds)
        token_rates.append(len(tokens) / seconds)
    return {
        "gguf": str(gguf), "bytes": gguf.stat().st_size, "vocab": llm.n_vocab(),
        "prompt_tokens": prompt_tokens, "prompt_chars": prompt_chars,
        "prompt_tokens_per_char": prompt_tokens / max(prompt_chars, 1),
        "prompt_chars_per_s": statistics.median(prompt_rates),
        "generated_chars": len(generated), "generated_tokens": new_tokens,
        "generation_chars_per_s": statistics.median(generation_rates),
        "generation_tokens_per_s": statistics.median(token_rates),
        "generated_text": generated,
    }


def table(result: dict) -> str:
    lines = ["| model | vocab | GGUF MB | prompt tokens/char | prompt chars/s | generation chars/s | generation tokens/s |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, m in result["models"].items():
        lines.append(f"| {name} | {m['vocab']:,} | {m['bytes'] / 1e6:.0f} | {m['prompt_tokens_per_char']:.3f} | "
                     f"{m['prompt_chars_per_s']:,.0f} | {m['generation_chars_per_s']:,.1f} | "
                     f"{m['generation_tokens_per_s']:,.1f} |")
    ratio = result["ratios"]
    lines.append(f"\nexpanded / unexpanded: prompt {ratio['prompt']:.2f}x, generation {ratio['generation']:.2f}x "
                 "Korean characters per second")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--expanded", type=Path, required=True, help="the Korean-expanded HF model (resize's output)")
    parser.add_argument("--base", type=Path, help="the unexpanded HF model (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--outtype", default="q8_0", help="GGUF type for both (default %(default)s)")
    parser.add_argument("--documents", type=int, default=40, help="held-out Korean documents prompted (default %(default)s)")
    parser.add_argument("--new-tokens", type=int, default=128, help="tokens generated (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="(default %(default)s; the median is kept)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="(default: every core)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/kocpt-serving-speed"), help="where the GGUF files go")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "serving-speed.json")
    args = parser.parse_args(argv)

    from checkpoints.smollm2 import smollm2_hf_dir
    from evaluation.bpc import read_documents
    from serving.gguf_check import llama_cpp_available
    from serving import BadInput  # the export's own bad-input error (serving/__init__.py)

    if not llama_cpp_available():
        parser.error("llama-cpp-python is not installed: pip install 'kocpt[gguf]' (built from source: minutes)")
    base = args.base or smollm2_hf_dir()
    args.work.mkdir(parents=True, exist_ok=True)
    documents = read_documents(KO_HELDOUT, args.documents)
    models = {}
    for name, model in (("unexpanded", base), ("expanded", args.expanded)):
        try:
            gguf = export_gguf(model, args.work / f"{name}-{args.outtype}.gguf", args.outtype)
        except BadInput as exc:
            parser.error(str(exc))
        models[name] = measure(gguf, documents, args.new_tokens, args.repeats, args.threads)
        print(f"{name}: {models[name]['prompt_chars_per_s']:,.0f} prompt chars/s, "
              f"{models[name]['generation_chars_per_s']:,.1f} generated chars/s", flush=True)
    result = {
        "settings": {k: str(v) for k, v in vars(args).items()}, "models": models,
        "ratios": {"prompt": models["expanded"]["prompt_chars_per_s"] / models["unexpanded"]["prompt_chars_per_s"],
                   "generation": models["expanded"]["generation_chars_per_s"] / models["unexpanded"]["generation_chars_per_s"]},
    }
    print(table(result))
    write_result(args.output, result)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
