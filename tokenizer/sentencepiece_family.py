"""The SentencePiece family (Llama-2, Mistral): a `tokenizer.model`, with the Hugging Face files derived from it.
What tokenizer/family.py's `TokenizerFamily` asks, done with this family's modules (spm_*.py, piece_merge.py).

Training: the trainer settings that matter for a merge into Llama-2 are fixed to Llama's: BPE, identity
normalization (NFC is the corpus stage's job; an NFKC normalizer would make pieces that never match Llama's
unnormalized input), byte_fallback, split_digits, whitespace-only pieces, no extra-whitespace removal,
16-char pieces. Writes PREFIX.model and PREFIX.vocab (SentencePiece's own convention).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from stagekit.outputs import write_file_atomic
from tokenizer import BadInput
from tokenizer.comparison import EvalTexts
from tokenizer.report_schema import SENTENCEPIECE, TokenizerReport
from tokenizer.spm_encoder import SentencePieceEncoder
from tokenizer.spm_model import load_model, resolve_model_path
from tokenizer.training_text import read_sample


def trainer_kwargs(job) -> dict:
    """SentencePiece trainer flags of tokenizer/train.py's TrainConfig; those marked (Llama) must equal
    Llama-2's for a clean merge."""
    section = job.tokenizer
    return dict(
        model_type=section.model_type,
        vocab_size=section.vocab_size,
        character_coverage=section.character_coverage,
        normalization_rule_name=job.normalization,  # (Llama) identity
        add_dummy_prefix=True,  # (Llama)
        remove_extra_whitespaces=False,  # (Llama)
        byte_fallback=True,  # (Llama)
        split_digits=True,  # (Llama) one digit per token
        split_by_unicode_script=True,  # (Llama)
        split_by_whitespace=True,  # (Llama)
        split_by_number=True,  # (Llama)
        allow_whitespace_only_pieces=True,  # (Llama)
        max_sentencepiece_length=job.max_piece_length,  # (Llama) 16
        max_sentence_length=job.max_sentence_length,
        unk_surface=" \u2047 ",  # (Llama)
        input_sentence_size=0,  # we sample ourselves, deterministically
        shuffle_input_sentence=False,
        num_threads=job.num_threads,
        vocabulary_output_piece_score=True,
        hard_vocab_limit=True,
        minloglevel=0 if job.verbose else 2,
    )


class SentencePieceFamily:
    name = SENTENCEPIECE
    file_name = "tokenizer.model"

    def tokenizer_file(self, path: str | Path) -> Path:
        return resolve_model_path(path)

    def has_hf_files(self, directory: str | Path) -> bool:
        return (Path(directory) / "tokenizer.json").is_file()  # derived from tokenizer.model by the merge

    def train(self, job, base: Path) -> dict:
        """A Korean SentencePiece model with Llama's settings (the base only has to be one: the merge reads it)."""
        try:
            load_model(base)
        except BadInput as exc:
            raise BadInput(f"--base {base}: neither a byte-level BPE tokenizer.json (or its directory) nor a "
                           f"SentencePiece model ({exc})") from None
        import sentencepiece as spm

        texts = read_sample(job)
        section = job.tokenizer
        print(f"training {section.model_type} vocab={section.vocab_size} on {len(texts.sentences):,} sentences "
              f"({texts.seen:,} distinct seen, {texts.duplicates:,} duplicates skipped) ...", file=sys.stderr)
        spm.set_random_generator_seed(section.seed)
        prefix = Path(job.output)
        prefix.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".train-", dir=prefix.parent) as tmp:
            tmp_prefix = Path(tmp) / "model"
            started = time.perf_counter()
            try:
                spm.SentencePieceTrainer.train(
                    sentence_iterator=iter(texts.sentences), model_prefix=str(tmp_prefix), **trainer_kwargs(job)
                )
            except RuntimeError as exc:
                message = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
                message = message.rsplit("] ", 1)[-1]  # drop "INTERNAL: src/trainer_interface.cc(600) [check]"
                raise BadInput(f"SentencePiece training failed: {message}") from None
            train_seconds = time.perf_counter() - started
            trained = load_model(f"{tmp_prefix}.model")
            # The temporary path is recorded in the model; record the real one so a seed gives identical bytes.
            trained.trainer_spec.model_prefix = prefix.name
            model_bytes = trained.SerializeToString()
            vocab_bytes = (Path(f"{tmp_prefix}.vocab")).read_bytes()
        # .vocab first: a present .model is the sign of a complete run.
        write_file_atomic(f"{prefix}.vocab", vocab_bytes)
        write_file_atomic(f"{prefix}.model", model_bytes)
        pieces = len(load_model(f"{prefix}.model").pieces)
        print(f"wrote {prefix}.model ({pieces:,} pieces) in {train_seconds:.1f}s", file=sys.stderr)
        return {"model": f"{prefix}.model", "pieces": pieces, "sentences": len(texts.sentences),
                "distinct_sentences_seen": texts.seen, "duplicates_skipped": texts.duplicates,
                "read_seconds": texts.read_seconds, "train_seconds": round(train_seconds, 2)}

    def merge(self, job) -> tuple[Path, TokenizerReport]:
        from tokenizer.spm_merge import merge_models, write_tokenizer_dir

        merged, stats, base = merge_models(job)
        return Path(job.output), write_tokenizer_dir(job, merged, stats, base)

    def merge_summary(self, report: dict) -> list[str]:
        from tokenizer.spm_report import summary_lines

        return summary_lines(report)

    def report(self, directory: Path, base, texts: EvalTexts, sweep_steps: int = 0, check_hf: bool = True) -> TokenizerReport:
        """`sweep_steps` > 0: tokens per character over that many added-vocabulary sizes too."""
        from tokenizer.spm_report import build_tokenizer_report

        return build_tokenizer_report(directory, load_model(base), texts, do_sweep=sweep_steps > 0,
                                      sweep_steps=sweep_steps, check_hf=check_hf, base_path=str(base))

    def check(self, directory: Path, base, text_files: list[str], code_files: int, max_lines: int, gguf) -> dict:
        from tokenizer.spm_check import check

        return check(directory, base, text_files, code_files, max_lines, gguf)

    def check_summary(self, report: dict) -> list[str]:
        from tokenizer.spm_check import summary_lines

        return summary_lines(report)

    def encoder(self, path: str | Path) -> SentencePieceEncoder:
        return SentencePieceEncoder(str(resolve_model_path(path)))

    def tokens(self, path: str | Path) -> list[str]:
        return [p.piece for p in load_model(path).pieces]


SENTENCEPIECE_FAMILY = SentencePieceFamily()
