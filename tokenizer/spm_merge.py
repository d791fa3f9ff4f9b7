"""The SentencePiece merge (`tokenizer/merge.py` for a SentencePiece base): load and check the inputs, merge
the Korean pieces (tokenizer/piece_merge.py), write tokenizer.model and the Hugging Face files derived from
it into a staging directory, report and check it there, then publish it (stagekit.outputs).

`config`: tokenizer/merge.py's MergeConfig (base, add, output, mode, script, the eval texts, ...).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from stagekit.outputs import staged_directory, write_file_atomic
from tokenizer.comparison import EvalTexts
from tokenizer.piece_merge import MergeStats, add_special, merge_chinese_llama, merge_safe
from tokenizer.report_plot import plot_report
from tokenizer.report_schema import TokenizerReport
from tokenizer.spm_hf_export import write_hf_files
from tokenizer.spm_merge_checks import check_added, check_added_size, check_added_type, check_adds_something, check_base
from tokenizer.spm_model import ModelProto, load_model, resolve_model_path

LICENSE_FILES = ("LICENSE", "LICENSE.txt", "USE_POLICY.md")


def merge_models(config) -> tuple[ModelProto, MergeStats, ModelProto]:
    """Load and check the inputs, merge; returns (merged, stats, base)."""
    started = time.perf_counter()
    base = load_model(config.base)
    check_base(base, resolve_model_path(config.base))
    added = []
    for path in config.add:
        model = load_model(path)
        check_added_size(model, path, base, resolve_model_path(config.base))
        if config.mode == "safe" and not config.allow_normalizer_mismatch:
            check_added(model, path, base)
        check_added_type(model, path, config.mode)
        added.append(model)
    if config.mode == "safe":
        merged, stats = merge_safe(base, added, config.script, config.max_added, config.hangul_nfc)
    else:
        merged, stats = merge_chinese_llama(base, added)
    check_adds_something(stats, config.add)
    if config.add_special:
        add_special(merged, config.add_special, stats)
    stats.seconds = round(time.perf_counter() - started, 2)
    return merged, stats, base


def _say(line: str) -> None:
    print(f"merge: {line}", file=sys.stderr)


def write_tokenizer_dir(config, merged: ModelProto, stats: MergeStats, base: ModelProto) -> TokenizerReport:
    """Write everything into a temporary sibling directory, verify, then rename into place."""
    from tokenizer.spm_check import check as check_tokenizer  # heavy imports (transformers)
    from tokenizer.spm_check import compact as compact_check
    from tokenizer.spm_report import build_tokenizer_report

    output = Path(config.output).resolve()
    with staged_directory(output, **config.output_rule(), say=_say) as staging:
        write_file_atomic(staging / "tokenizer.model", merged.SerializeToString())
        write_hf_files(merged, staging)
        base_dir = resolve_model_path(config.base).parent
        for name in LICENSE_FILES:
            if (base_dir / name).is_file():
                shutil.copyfile(base_dir / name, staging / name)
        texts = EvalTexts(korean=config.eval_korean, english=config.eval_english,
                          code_files=config.eval_code_files, max_lines=config.eval_max_lines)
        result = build_tokenizer_report(staging, base, texts, merge_stats=stats.__dict__, base_path=str(config.base))
        result.tokenizer = str(output)  # the directory it is renamed to below, not the staging one
        checked = check_tokenizer(staging, resolve_model_path(config.base), config.eval_korean + config.eval_english,
                                  code_files=config.eval_code_files, max_lines=config.eval_max_lines)
        result.extra["check"] = compact_check(checked)
        result.defects = list(checked["defects"])
        result.write(staging / "report.json")
        if config.plot and result.korean:
            plot_report(result.to_dict(), staging / "report.png")
    return result
