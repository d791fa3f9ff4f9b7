"""Loading, checking and writing SentencePiece `ModelProto`s, and the character classes the merge uses."""

from __future__ import annotations

from pathlib import Path

from google.protobuf.message import DecodeError
from sentencepiece import sentencepiece_model_pb2 as model_pb2

from tokenizer import BadInput

ModelProto = model_pb2.ModelProto
Piece = model_pb2.ModelProto.SentencePiece
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = (
    Piece.NORMAL, Piece.UNKNOWN, Piece.CONTROL, Piece.USER_DEFINED, Piece.UNUSED, Piece.BYTE,
)
BPE = model_pb2.TrainerSpec.BPE
UNIGRAM = model_pb2.TrainerSpec.UNIGRAM
MODEL_TYPE_NAMES = {value: name for name, value in model_pb2.TrainerSpec.ModelType.items()}
SPACE = "\u2581"  # SentencePiece's whitespace marker


def resolve_model_path(path: str | Path) -> Path:
    """A `.model` file, or a directory (e.g. a Hugging Face one) holding `tokenizer.model`."""
    path = Path(path)
    if path.is_dir():
        candidate = path / "tokenizer.model"
        if not candidate.is_file():
            raise BadInput(f"{path}: directory has no tokenizer.model")
        return candidate
    if not path.exists():
        raise BadInput(f"{path}: no such tokenizer (no such file or directory)")
    return path


def load_model(path: str | Path) -> ModelProto:
    """Parse a SentencePiece model; anything else is a one-line BadInput."""
    path = resolve_model_path(path)
    data = path.read_bytes()
    proto = ModelProto()
    try:
        proto.ParseFromString(data)
    except DecodeError:
        raise BadInput(f"{path}: not a SentencePiece model (protobuf parse failed)") from None
    # Protobuf happily parses many byte strings (e.g. empty or text files) into empty messages.
    if len(proto.pieces) == 0 or not proto.HasField("trainer_spec"):
        raise BadInput(f"{path}: not a SentencePiece model (no pieces / trainer_spec)")
    return proto


def model_type_name(proto: ModelProto) -> str:
    return MODEL_TYPE_NAMES.get(proto.trainer_spec.model_type, str(proto.trainer_spec.model_type))


def is_hangul(char: str) -> bool:
    """Hangul script: syllables, conjoining jamo (incl. extended A/B), compatibility and halfwidth jamo."""
    code = ord(char)
    return (
        0xAC00 <= code <= 0xD7A3
        or 0x1100 <= code <= 0x11FF
        or 0x3130 <= code <= 0x318F
        or 0xA960 <= code <= 0xA97F
        or 0xD7B0 <= code <= 0xD7FF
        or 0xFFA0 <= code <= 0xFFDC
    )


def is_hangul_syllable(char: str) -> bool:
    return 0xAC00 <= ord(char) <= 0xD7A3


def has_digit(text: str) -> bool:
    return any(char.isdigit() for char in text)


