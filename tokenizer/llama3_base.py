"""The real Llama-3 tokenizer as a Hugging Face directory, built offline from Meta's `llama-models` wheel.

    python -m tokenizer.llama3_base --output llama3-tokenizer/

The wheel (PyPI, 6.6 MB) ships `llama_models/llama3/tokenizer.model` (tiktoken BPE ranks, 128,000
tokens) and `llama_models/llama3/tokenizer.py` (the split regex and the 256 special tokens). The regex
and the special-token names are read from that file's source (never run); transformers' own
TikTokenConverter turns the ranks into a tokenizer.json; the 256 specials take ids 128000..128255 in
Meta's order, and `<|begin_of_text|>` is prepended on encode as in Meta's Hugging Face release. Before
anything is published, the ids are compared with tiktoken's (the same ranks and regex) on Korean,
English, code and emoji strings. Built once into the cache (`$KOCPT_CACHE`, default ~/.cache/kocpt),
keyed by the wheel's version. The directory has no tokenizer.model, so every stage sees a byte-level BPE.
"""

from __future__ import annotations

import argparse
import ast
import sys
import tempfile
import zipfile
from pathlib import Path

from stagekit.errors import BadInput
from stagekit.wheels import built_from_wheel, copy_to_new_directory

WHEEL = "llama-models"
WHEEL_VERSION = "0.3.0"
RANKS = "llama_models/llama3/tokenizer.model"
SOURCE = "llama_models/llama3/tokenizer.py"
BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"
FIRST_SPECIAL_ID = 128000
# Meta's tokenizer.py names the reserved specials after its literal list with this expression.
_RESERVED = 'f"<|reserved_special_token_{2 + i}|>" for i in range(self.num_reserved_special_tokens - len(special_tokens))'
CHECK_STRINGS = [
    "대한민국의 수도는 서울이다. 한국어 토큰화 시험: ㅋㅋㅋ 뭐야?!", "The quick brown fox jumps over 1234567 lazy dogs.",
    'def f(x):\n    return {"a": [1, 2.5e-3]}  # comment\n', "emoji 🦙🚀 ✅ 👍🏽 \u200d and  \t\n\n  spaces",
    "I'm sure they'll've done it; WE'RE", "日本語と中文とрусский", "GPU 메모리는 80GB이고 batch_size=32 입니다",
]


def read_spec(source: str) -> tuple[str, list[str]]:
    """(the split regex, the 256 special-token names in id order) from the text of Meta's tokenizer.py."""
    pattern = reserved = listed = None
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, value = node.targets[0].id, node.value
            if name == "pat_str" and isinstance(value, ast.Constant):
                pattern = value.value
            elif name == "num_reserved_special_tokens" and isinstance(value, ast.Constant):
                reserved = value.value
            elif name == "special_tokens" and isinstance(value, ast.List) and listed is None:
                listed = [e.value for e in value.elts if isinstance(e, ast.Constant)]
    if not (pattern and reserved and listed and _RESERVED in source and listed[:2] == [BOS, EOS]):
        raise BadInput(f"{SOURCE} of {WHEEL}=={WHEEL_VERSION}: no pat_str / special_tokens / reserved tokens as expected")
    names = listed + [f"<|reserved_special_token_{2 + i}|>" for i in range(reserved - len(listed))]
    if len(set(names)) != len(names):
        raise BadInput(f"{SOURCE}: special-token names repeat")
    return pattern, names


def tiktoken_encoding(ranks_file: Path, pattern: str, specials: list[str]):
    """tiktoken's own Encoding for the same ranks, regex and specials: the reference the ids are checked against."""
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    ranks = load_tiktoken_bpe(str(ranks_file))
    return tiktoken.Encoding(name="llama3", pat_str=pattern, mergeable_ranks=ranks,
                             special_tokens={t: len(ranks) + i for i, t in enumerate(specials)})


def build_tokenizer(ranks_file: Path, pattern: str, specials: list[str]):
    """A PreTrainedTokenizerFast for the ranks, via transformers' TikTokenConverter."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    try:
        backend = TikTokenConverter(vocab_file=str(ranks_file), pattern=pattern, extra_special_tokens=specials).converted()
    except ValueError as exc:  # e.g. tiktoken missing, or a ranks file it cannot read
        raise BadInput(f"{ranks_file}: transformers cannot convert it ({str(exc).splitlines()[0]})") from None
    ids = [backend.token_to_id(t) for t in specials]
    if ids != list(range(FIRST_SPECIAL_ID, FIRST_SPECIAL_ID + len(specials))):
        raise BadInput(f"{ranks_file}: the special tokens got ids {ids[0]}..{ids[-1]}, not {FIRST_SPECIAL_ID}.. "
                       f"(the ranks file holds {backend.get_vocab_size(with_added_tokens=False):,} tokens)")
    backend.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B:1",
                                      special_tokens=[(BOS, FIRST_SPECIAL_ID)])])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=BOS, eos_token=EOS, clean_up_tokenization_spaces=False)


def check_ids(hf, reference, strings: list[str]) -> None:
    """Refuse the build unless the HF tokenizer gives tiktoken's ids on every string and decodes them back."""
    for text in strings:
        ours, theirs = hf.encode(text, add_special_tokens=False), reference.encode(text, disallowed_special=())
        if ours != theirs:
            raise BadInput(f"the converted tokenizer differs from tiktoken on {text[:40]!r} ({ours[:8]} vs {theirs[:8]})")
        if hf.decode(ours) != text:
            raise BadInput(f"the converted tokenizer does not decode {text[:40]!r} back")


def _build(wheel: Path, target: Path) -> None:
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".llama3-") as tmp:
        ranks_file = Path(tmp) / "tokenizer.model"
        try:
            with zipfile.ZipFile(wheel) as archive:
                source = archive.read(SOURCE).decode("utf-8")
                ranks_file.write_bytes(archive.read(RANKS))
                licence = next((archive.read(n).decode("utf-8", "replace").strip() for n in archive.namelist()
                                if n.endswith(".dist-info/licenses/LICENSE")), "(none)")
        except (zipfile.BadZipFile, KeyError) as exc:
            raise BadInput(f"{wheel}: not the {WHEEL} wheel with {RANKS} ({exc})") from None
        pattern, specials = read_spec(source)
        hf = build_tokenizer(ranks_file, pattern, specials)
        check_ids(hf, tiktoken_encoding(ranks_file, pattern, specials), CHECK_STRINGS)
        staging = Path(tmp) / "hf"
        hf.save_pretrained(staging)
        # A .txt file: tokenizer/merge.py copies it into every merged directory built on this one.
        (staging / "LLAMA3_NOTICE.txt").write_text(
            f"Built from {RANKS} of the PyPI wheel {WHEEL}=={WHEEL_VERSION} (Meta Platforms, Inc.).\n"
            f"That wheel's LICENSE reads: {licence}\n"
            "The Llama 3 tokenizer is Llama Material under Meta's Llama 3 Community License Agreement;\n"
            "read it before redistributing this directory or a tokenizer derived from it.\n", encoding="utf-8")
        staging.rename(target)


def llama3_tokenizer_dir(cache: Path | None = None) -> Path:
    """The Llama-3 tokenizer as a Hugging Face directory (built once, cached)."""
    return built_from_wheel(WHEEL, WHEEL_VERSION, "6.6 MB", cache, f"llama3-tokenizer-{WHEEL}-{WHEEL_VERSION}-hf",
                            "tokenizer.json", _build)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                     epilog=f"From {WHEEL}=={WHEEL_VERSION} (fetched once with pip); the built "
                                            "directory is cached and --output gets a copy.")
    parser.add_argument("--output", type=Path, required=True, help="directory to write (must not exist)")
    parser.add_argument("--cache", type=Path, default=None, help="cache folder (default $KOCPT_CACHE or ~/.cache/kocpt)")
    args = parser.parse_args(argv)
    try:
        copy_to_new_directory(args.output, lambda: llama3_tokenizer_dir(args.cache))
    except (BadInput, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"Llama-3 tokenizer ({WHEEL}=={WHEEL_VERSION}: 128,000 BPE tokens + 256 specials, ids equal to tiktoken's) "
          f"-> {args.output}")
    return 0


if __name__ == "__main__":
    from stagekit.entry import run_main  # Ctrl-C and bad input: one line

    sys.exit(run_main(main))
