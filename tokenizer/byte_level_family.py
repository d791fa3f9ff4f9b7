"""The byte-level BPE family (SmolLM2, Llama-3, Qwen2.5): a Hugging Face `tokenizer.json` (BPE under a ByteLevel
pre-tokenizer) and no `tokenizer.model`. What tokenizer/family.py's `TokenizerFamily` asks, done with this
family's modules (bpe_*.py).

Training learns Korean merges under the base's own pre-tokenizer and byte alphabet and writes PREFIX.json,
for `tokenizer/merge.py --base BASE --add PREFIX.json`. `bpe_method` continue (default) learns vocab_size
Korean merges on top of the base's own segmentation (tokenizer/bpe_continue.py; 0.557 tokens per character
with 16,000 on SmolLM2); fresh trains a new BPE of vocab_size tokens with `tokenizers`, of which the merge
keeps about two thirds (tokenizer/bpe_merge.py; 0.637 with 15,715 kept of 24,000).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from stagekit.outputs import write_file_atomic
from tokenizer import BadInput
from tokenizer.bpe_encoder import ByteLevelEncoder
from tokenizer.comparison import EvalTexts
from tokenizer.report_schema import BYTE_LEVEL, TokenizerReport
from tokenizer.training_text import read_sample


class ByteLevelFamily:
    name = BYTE_LEVEL
    file_name = "tokenizer.json"

    def tokenizer_file(self, path: str | Path) -> Path:
        path = Path(path)
        return path / self.file_name if path.is_dir() else path

    def has_hf_files(self, directory: str | Path) -> bool:
        return (Path(directory) / self.file_name).is_file()

    def train(self, job, base: Path) -> dict:
        from tokenizer.bpe_continue import continue_merges, continued_tokenizer_json
        from tokenizer.bpe_merge import train_byte_level

        if job.tokenizer.model_type != "bpe":
            raise BadInput("--model-type unigram: a byte-level BPE base takes BPE merges only")
        base_json = self.tokenizer_file(base)
        texts = read_sample(job)
        vocab_size = job.tokenizer.vocab_size
        print(f"learning byte-level BPE merges ({job.bpe_method}, {vocab_size}) for {base_json} on "
              f"{len(texts.sentences):,} sentences ...", file=sys.stderr)
        started = time.perf_counter()
        if job.bpe_method == "continue":
            text = continued_tokenizer_json(base_json, continue_merges(texts.sentences, base_json, vocab_size))
        else:
            text = train_byte_level(texts.sentences, base_json, vocab_size)
        target = Path(f"{job.output}.json")
        target.parent.mkdir(parents=True, exist_ok=True)
        write_file_atomic(target, text.encode("utf-8"))
        merges = len(json.loads(text)["model"]["merges"])
        seconds = time.perf_counter() - started
        print(f"wrote {target} ({merges:,} merges) in {seconds:.1f}s", file=sys.stderr)
        return {"model": str(target), "merges": merges, "sentences": len(texts.sentences),
                "read_seconds": texts.read_seconds, "train_seconds": round(seconds, 2)}

    def merge(self, job) -> tuple[Path, TokenizerReport]:
        from tokenizer.bpe_write import write_byte_level_dir

        return Path(job.output), write_byte_level_dir(job, self.tokenizer_file(job.base))

    def merge_summary(self, report: dict) -> list[str]:
        from tokenizer.bpe_report import summary_lines

        return summary_lines(report)

    def report(self, directory: Path, base, texts: EvalTexts, sweep_steps: int = 0, check_hf: bool = True) -> TokenizerReport:
        """The merge's report of an existing directory (the sweep is the SentencePiece report's; AutoTokenizer
        is always compared: tokenizer.json is Hugging Face's own file)."""
        from tokenizer.bpe_check import read_spec
        from tokenizer.bpe_report import build_report, report_texts

        base_json = self.tokenizer_file(base)
        return build_report(directory, base_json, read_spec(base_json),
                            report_texts(texts.korean, texts.english, texts.code_files, texts.max_lines))

    def check(self, directory: Path, base, text_files: list[str], code_files: int, max_lines: int, gguf) -> dict:
        from tokenizer.bpe_check import check_byte_level

        if gguf:
            raise BadInput(f"--gguf: the llama.cpp comparison covers SentencePiece directories; {directory} is "
                           "byte-level (kocpt export gguf checks llama.cpp's ids on it)")
        return check_byte_level(directory, self.tokenizer_file(base) if base else None, text_files, code_files,
                                max_lines)

    def check_summary(self, report: dict) -> list[str]:
        from tokenizer.bpe_check import summary_lines

        return summary_lines(report)

    def encoder(self, path: str | Path) -> ByteLevelEncoder:
        return ByteLevelEncoder(str(self.tokenizer_file(path)))

    def tokens(self, path: str | Path) -> list[str]:
        """A gap in the ids would become a [PAD] token in llama.cpp's converter; named so here."""
        from tokenizers import Tokenizer

        file = self.tokenizer_file(path)
        try:
            vocab = Tokenizer.from_file(str(file)).get_vocab(with_added_tokens=True)
        except Exception as exc:  # tokenizers raises a bare Exception on a bad file
            raise BadInput(f"{file}: not a readable tokenizer.json "
                           f"({str(exc).splitlines()[0] if str(exc) else exc!r})") from None
        by_id = {i: t for t, i in vocab.items()}
        return [by_id.get(i, f"[PAD{i}]") for i in range(1 + max(by_id))]


BYTE_LEVEL_FAMILY = ByteLevelFamily()
