"""The `tokenizer:` section of a run config (e.g. configs/demo.yaml), typed and validated at start-up."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from tokenizer import BadInput

MISTRAL_V1 = ("mistral_common", "data", "tokenizer.model.v1")


def mistral_base_model() -> Path:
    """Mistral-7B's tokenizer.model.v1 shipped by mistral-common: a Llama-family SentencePiece BPE
    (32,000 pieces, byte fallback, split digits) usable as a stand-in base when no Llama-2 tokenizer is given."""
    import importlib.util

    spec = importlib.util.find_spec(MISTRAL_V1[0])
    if spec is None or not spec.submodule_search_locations:
        raise BadInput("no base tokenizer given and mistral-common (stand-in base) is not installed")
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*MISTRAL_V1[1:])
    if not path.is_file():
        raise BadInput(f"{path}: mistral-common does not ship tokenizer.model.v1")
    return path


@dataclass
class TokenizerConfig:
    vocab_size: int = 2000  # pieces of the trained Korean model, incl. 3 special + 256 byte pieces
    model_type: str = "bpe"
    character_coverage: float = 0.9995
    sample_size: int = 200_000
    seed: int = 1234
    mode: str = "safe"
    hangul_nfc: bool = False
    max_added: int = 0
    base: str | None = None  # Llama-2 tokenizer.model or a dir; None: Mistral's v1 model as a stand-in

    @classmethod
    def from_dict(cls, section: dict | None) -> TokenizerConfig:
        section = dict(section or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise BadInput(f"tokenizer config: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        config = cls(**section)
        config.validate()
        return config

    def validate(self) -> None:
        checks = [
            (isinstance(self.vocab_size, int) and self.vocab_size >= 300, "vocab_size must be an integer >= 300"),
            (self.model_type in ("bpe", "unigram"), "model_type must be bpe or unigram"),
            (isinstance(self.character_coverage, (int, float)) and 0.9 <= self.character_coverage <= 1.0,
             "character_coverage must be in [0.9, 1.0]"),
            (isinstance(self.sample_size, int) and self.sample_size >= 0, "sample_size must be an integer >= 0"),
            (isinstance(self.seed, int), "seed must be an integer"),
            (self.mode in ("safe", "chinese-llama"), "mode must be safe or chinese-llama"),
            (isinstance(self.hangul_nfc, bool), "hangul_nfc must be true or false"),
            (isinstance(self.max_added, int) and self.max_added >= 0, "max_added must be an integer >= 0"),
            (self.base is None or isinstance(self.base, str), "base must be a path or null"),
        ]
        for ok, message in checks:
            if not ok:
                raise BadInput(f"tokenizer config: {message}")

    def base_model(self) -> Path:
        return Path(self.base) if self.base else mistral_base_model()

    def train_args(self, inputs: list[str], output_prefix: str) -> list[str]:
        """Arguments for tokenizer.train.main."""
        return ["--input", *inputs, "--output", output_prefix, "--vocab-size", str(self.vocab_size),
                "--model-type", self.model_type, "--character-coverage", str(self.character_coverage),
                "--sample-size", str(self.sample_size), "--seed", str(self.seed)]

    def merge_args(self, added_model: str, output_dir: str) -> list[str]:
        """Arguments for tokenizer.merge.main."""
        args = ["--base", str(self.base_model()), "--add", added_model, "--output", output_dir, "--mode", self.mode]
        if self.hangul_nfc:
            args.append("--hangul-nfc")
        if self.max_added:
            args += ["--max-added", str(self.max_added)]
        return args
