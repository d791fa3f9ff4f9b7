"""`tokenizer/merge.py` for a byte-level BPE base: merge (tokenizer/bpe_merge.py), write, verify, report.

The output directory is the base's own files (tokenizer_config.json, chat template, special-token map,
licenses) with tokenizer.json replaced, written to a temporary sibling and renamed into place only after
the checks ran: AutoTokenizer loads it and gives the same ids as `tokenizers`; every base id keeps its
token; English, code and the edge strings give the base's ids; every added token is reachable.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from stagekit.outputs import staged_directory
from tokenizer import BadInput
from tokenizer.bpe_merge import merge_byte_level, read_learned
from tokenizer.bpe_report import build_report, report_texts
from tokenizer.report_plot import plot_report
from tokenizer.report_schema import TokenizerReport

_NOT_COPIED = {"tokenizer.json", "report.json"}
_TOKENIZER_FILES = (".json", ".jinja", ".txt", ".md")
_MODEL_FILES = ("config.json", "generation_config.json")


def _base_files(base_json: Path) -> list[Path]:
    """The base directory's tokenizer-side files: everything small and textual except weights and model config."""
    if base_json.name != "tokenizer.json":
        return []
    return sorted(p for p in base_json.parent.iterdir() if p.is_file() and p.suffix in _TOKENIZER_FILES
                  and p.name not in _NOT_COPIED and p.name not in _MODEL_FILES and not p.name.startswith("."))


def write_byte_level_dir(config, base_json: Path) -> TokenizerReport:
    """`config`: tokenizer/merge.py's MergeConfig (base, add, output, max_added, eval texts); `base_json`:
    the base's tokenizer.json. Publishes the directory; returns its report."""
    if config.mode != "safe" or config.script != "hangul" or config.hangul_nfc:
        raise BadInput(f"{base_json}: a byte-level BPE base takes --mode safe --script hangul without --hangul-nfc")
    base_spec = json.loads(base_json.read_text(encoding="utf-8"))
    learned = []
    for path in config.add:
        if Path(path).suffix != ".json":
            raise BadInput(f"{path}: a byte-level base ({base_json}) takes PREFIX.json from tokenizer/train.py "
                           f"--base {config.base}, not a SentencePiece model")
        spec = json.loads(Path(path).read_text(encoding="utf-8")) if Path(path).is_file() else None
        if spec is None:
            raise BadInput(f"{path}: not found")
        if spec.get("pre_tokenizer") != base_spec.get("pre_tokenizer") and not config.allow_normalizer_mismatch:
            raise BadInput(f"{path}: its pre-tokenizer differs from the base's, so its merges would split text "
                           "elsewhere; retrain with tokenizer/train.py --base BASE (or --allow-normalizer-mismatch)")
        learned += read_learned(path)
    merged_spec, stats = merge_byte_level(base_spec, learned, config.max_added)
    if stats.added == 0:
        raise BadInput(f"nothing to add: every merge of {', '.join(config.add)} is in the base or filtered out "
                       f"(present {stats.skipped_already_present:,}, not Hangul {stats.skipped_not_script:,}, "
                       f"missing part {stats.skipped_missing_part:,}, unreachable {stats.unreachable_dropped:,})")
    next_id = stats.first_added_id + stats.added
    taken = set(merged_spec["model"]["vocab"]) | {t["content"] for t in merged_spec["added_tokens"]}
    for token in config.add_special:
        if token in taken or config.add_special.count(token) > 1:
            raise BadInput(f"--add-special {token!r}: already a token of the merged vocabulary or named twice")
    for k, token in enumerate(config.add_special):
        merged_spec["added_tokens"].append({"id": next_id + k, "content": token, "single_word": False, "lstrip": False,
                                            "rstrip": False, "normalized": False, "special": True})
    texts = report_texts(config.eval_korean, config.eval_english, config.eval_code_files, config.eval_max_lines)
    output = Path(config.output).resolve()
    say = lambda line: print(f"merge: {line}", file=sys.stderr)
    with staged_directory(output, **config.output_rule(), say=say) as staging:
        for path in _base_files(base_json):
            shutil.copyfile(path, staging / path.name)
        _add_special_to_config(staging, config.add_special)
        (staging / "tokenizer.json").write_text(json.dumps(merged_spec, ensure_ascii=False), encoding="utf-8")
        result = build_report(staging, base_json, base_spec, texts, stats.__dict__)
        result.tokenizer = str(output)  # the directory it is renamed to below, not the staging one
        result.write(staging / "report.json")
        if config.plot and result.korean:
            plot_report(result.to_dict(), staging / "report.png")
    return result


def _add_special_to_config(staging: Path, tokens: list[str]) -> None:
    path = staging / "tokenizer_config.json"
    if tokens and path.is_file():
        config = json.loads(path.read_text(encoding="utf-8"))
        config["extra_special_tokens"] = list(config.get("extra_special_tokens") or []) + tokens
        path.write_text(json.dumps(config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
