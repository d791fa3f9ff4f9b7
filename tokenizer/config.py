"""The `tokenizer:` section of a run config (e.g. configs/demo.yaml), read by tokenizer/train.py and
tokenizer/merge.py through the shared loader (`stagekit.config.load_section`). The section validates
itself; each command's job (TrainConfig, MergeConfig) holds it and adds only its own flags."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tokenizer import BadInput

MISTRAL_V1 = ("mistral_common", "data", "tokenizer.model.v1")
MODEL_TYPES = ("bpe", "unigram")  # SentencePiece's algorithms (spelled out in validate: the model-family guard reads literals)
MODES = ("safe", "chinese-llama")  # the merge's


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
    """`tokenizer:`: the first five keys are tokenizer/train.py's, the last four tokenizer/merge.py's.
    The defaults are the commands' own (16k pieces: what a real run trains)."""

    vocab_size: int = 16000  # pieces of the trained Korean model, incl. 3 special + 256 byte pieces
    model_type: str = "bpe"
    character_coverage: float = 0.9995
    sample_size: int = 2_000_000  # sentences sampled for training (0: all)
    seed: int = 1234
    mode: str = "safe"
    hangul_nfc: bool = False
    max_added: int = 0  # 0: every piece the mode admits
    base: str | None = None  # Llama-2 tokenizer.model or a dir; None: Mistral's v1 model as a stand-in

    def validate(self) -> None:
        checks = [
            (self.vocab_size >= 300, f"vocab_size must be >= 300, got {self.vocab_size}"),
            (self.model_type in ("bpe", "unigram"), f"model_type must be bpe or unigram, got {self.model_type!r}"),
            (0.9 <= self.character_coverage <= 1.0, f"character_coverage must be in [0.9, 1.0], got {self.character_coverage}"),
            (self.sample_size >= 0, f"sample_size must be >= 0, got {self.sample_size}"),
            (self.mode in MODES, f"mode must be safe or chinese-llama, got {self.mode!r}"),
            (self.max_added >= 0, f"max_added must be >= 0, got {self.max_added}"),
        ]
        for ok, message in checks:
            if not ok:
                raise BadInput(f"tokenizer.{message}")
        if self.mode == "chinese-llama" and (self.hangul_nfc or self.max_added):
            raise BadInput("tokenizer.hangul_nfc and tokenizer.max_added (--hangul-nfc, --max-added) are safe-mode options")

    def base_model(self) -> Path:
        """The base tokenizer to merge into: `base`, or the Mistral stand-in when it is null."""
        return Path(self.base) if self.base else mistral_base_model()
