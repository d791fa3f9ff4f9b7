"""Run llama.cpp's `convert_hf_to_gguf.py` so a byte-level tokenizer with added Korean merges keeps its base's
pre-tokenizer name.

    PYTHONPATH=LLAMA_CPP:LLAMA_CPP/gguf-py python -m serving.gguf_pre_tokenizer CONVERTER_SCRIPT MODEL_DIR [options]

llama.cpp names a byte-level pre-tokenizer (`tokenizer.ggml.pre`: "smollm", "llama-bpe", "qwen2", ...) by a
sha256 of the ids the tokenizer gives a fixed test text, and refuses a checksum it does not know. The name only
selects llama.cpp's pre-tokenizer regex; the merges themselves go into the GGUF. Merges appended by
tokenizer/merge.py's safe mode need Hangul, which the test text lacks, so they leave the checksum as it was;
merges that touch other text change it. Then the base's name is the right one (the pre-tokenizer is the
base's, copied unchanged), and it is found the way the converter finds any: by the checksum of the
tokenizer with the appended merges and tokens set aside, which the merge recorded in report.json
(`base_merges`, `first_added_id`). Without that record the converter's refusal stands.
"""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path


def base_view(model_dir: Path):
    """The model's tokenizer without the merges and tokens tokenizer/merge.py appended, or None if unknown."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    report_file, tokenizer_file = model_dir / "report.json", model_dir / "tokenizer.json"
    if not report_file.is_file() or not tokenizer_file.is_file():
        return None
    report = json.loads(report_file.read_text(encoding="utf-8"))
    merge = report.get("merge") or {}
    if report.get("kind") != "byte-level BPE" or "base_merges" not in merge or "first_added_id" not in merge:
        return None
    spec = json.loads(tokenizer_file.read_text(encoding="utf-8"))
    spec["model"]["merges"] = spec["model"]["merges"][: merge["base_merges"]]
    spec["model"]["vocab"] = {t: i for t, i in spec["model"]["vocab"].items() if i < merge["first_added_id"]}
    spec["added_tokens"] = [t for t in spec.get("added_tokens", []) if t["id"] < merge["first_added_id"]]
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(spec)))


def patch_converter(model_dir: Path) -> None:
    from conversion.base import TextModel, logger

    recognized = TextModel.get_vocab_base_pre

    def get_vocab_base_pre(self, tokenizer) -> str:
        try:
            return recognized(self, tokenizer)
        except NotImplementedError:
            base = base_view(model_dir)
            if base is None:
                raise
            name = recognized(self, base)
            logger.warning(f"pre-tokenizer declared as {name!r}, the base's: the checksum changed only through merges "
                           f"appended to it (report.json), and the pre-tokenizer itself is the base's")
            return name

    TextModel.get_vocab_base_pre = get_vocab_base_pre


def main() -> None:
    script, model_dir = Path(sys.argv[1]), Path(sys.argv[2])
    patch_converter(model_dir)
    sys.argv = [str(script), *sys.argv[2:]]
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main()
