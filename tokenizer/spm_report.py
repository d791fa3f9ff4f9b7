"""The report of a SentencePiece merge (tokenizer/report_schema.py's `TokenizerReport`): what the merge did and
what it does to Korean, English and code.

Figures: vocabulary sizes and merge counts; on Korean text tokens per character and per word and the
byte-token share, before -> after; on English and code the share of lines whose ids are identical to
the base's (100% in safe mode); Hugging Face fast vs SentencePiece agreement; decode(encode(x)) == x;
example segmentations; with `do_sweep`, tokens per character over added-vocabulary sizes.
Written by the merge (tokenizer/spm_merge.py) and by `kocpt tokenizer report` (tokenizer/report.py).
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np
import sentencepiece as spm
from tqdm import tqdm

from tokenizer.comparison import PROBES, EvalTexts, identity, read_lines, stdlib_code_lines
from tokenizer.report_schema import SENTENCEPIECE, TextFigures, TokenizerReport, VocabFigures
from tokenizer.spm_model import ModelProto, is_hangul, load_model


def figures(processor: spm.SentencePieceProcessor, lines: list[str]) -> TextFigures:
    ids = processor.encode(lines)
    return TextFigures.of(tokens=sum(len(x) for x in ids), chars=sum(len(line) for line in lines),
                          words=sum(len(line.split()) for line in lines),
                          byte_tokens=sum(processor.is_byte(i) for x in ids for i in x))


def measure(processor: spm.SentencePieceProcessor, lines: list[str]) -> dict:
    return figures(processor, lines).to_dict()


def hf_agreement(hf, processor: spm.SentencePieceProcessor, lines: list[str]) -> dict:
    hf_ids = hf(lines, add_special_tokens=False)["input_ids"] if lines else []
    sp_ids = processor.encode(lines)
    agree = [a == b for a, b in zip(hf_ids, sp_ids)]
    decoded = hf.batch_decode(hf_ids) if lines else []
    round_trip = [d == line for d, line in zip(decoded, lines)]
    bad = next((i for i, ok in enumerate(agree) if not ok), None)
    return {
        "lines": len(lines), "agree": int(sum(agree)), "share": round(sum(agree) / max(len(lines), 1), 6),
        "hf_decode_roundtrip_share": round(sum(round_trip) / max(len(lines), 1), 6),
        "first_mismatch": None if bad is None else {"text": lines[bad], "sentencepiece": sp_ids[bad], "hf": hf_ids[bad]},
    }


def added_counts(base: ModelProto, merged: ModelProto) -> dict:
    base_set = {p.piece for p in base.pieces}
    new = [p.piece for p in merged.pieces if p.piece not in base_set]
    return {"base_pieces": len(base.pieces), "merged_pieces": len(merged.pieces), "added_pieces": len(new),
            "added_with_hangul": sum(any(is_hangul(c) for c in t) for t in new),
            "trainer_spec_vocab_size": merged.trainer_spec.vocab_size}


def vocab_figures(base: ModelProto, merged: ModelProto) -> VocabFigures:
    counts = added_counts(base, merged)
    return VocabFigures(base_size=counts["base_pieces"], added=counts["added_pieces"], size=counts["merged_pieces"],
                        unit="pieces", detail=counts)


def sweep(base: ModelProto, merged: ModelProto, lines: list[str], steps: int = 8) -> list[dict]:
    """Tokens per character when only the first k added pieces are kept (added pieces come in merge order)."""
    n_added = len(merged.pieces) - len(base.pieces)
    points = []
    for k in sorted({int(round(x)) for x in np.linspace(0, n_added, steps + 1)}):
        truncated = ModelProto()
        truncated.CopyFrom(merged)
        del truncated.pieces[len(base.pieces) + k:]
        truncated.trainer_spec.vocab_size = len(truncated.pieces)
        processor = spm.SentencePieceProcessor(model_proto=truncated.SerializeToString())
        points.append({"added": k, "tokens_per_char": measure(processor, lines)["tokens_per_char"]})
    return points


def build_report(tokenizer_dir: str | Path, base: ModelProto, texts: EvalTexts, merge_stats: dict | None = None,
                 do_sweep: bool = False, sweep_steps: int = 8, check_hf: bool = True, base_path: str | None = None) -> dict:
    """The report.json of a SentencePiece tokenizer directory (tokenizer/report_schema.py), as a dict."""
    return build_tokenizer_report(tokenizer_dir, base, texts, merge_stats, do_sweep, sweep_steps, check_hf,
                                  base_path).to_dict()


def build_tokenizer_report(tokenizer_dir: str | Path, base: ModelProto, texts: EvalTexts, merge_stats: dict | None = None,
                           do_sweep: bool = False, sweep_steps: int = 8, check_hf: bool = True,
                           base_path: str | None = None) -> TokenizerReport:
    tokenizer_dir = Path(tokenizer_dir)
    merged_proto = load_model(tokenizer_dir)
    merged = spm.SentencePieceProcessor(model_proto=merged_proto.SerializeToString())
    base_sp = spm.SentencePieceProcessor(model_proto=base.SerializeToString())
    korean = {str(p): read_lines(p, texts.max_lines) for p in texts.korean}
    english = {str(p): read_lines(p, texts.max_lines) for p in texts.english}
    code = stdlib_code_lines(texts.code_files, texts.max_lines, texts.seed)
    non_korean = dict(english)
    if code:
        non_korean["python-stdlib"] = code
    plain_probes = [p for p in PROBES if not any(is_hangul(c) for c in p)]

    result = TokenizerReport(
        kind=SENTENCEPIECE, tokenizer=str(tokenizer_dir), base=base_path, vocab=vocab_figures(base, merged_proto),
        merge=merge_stats,
        korean={name: {"base": figures(base_sp, lines), "merged": figures(merged, lines)} for name, lines in korean.items()},
        identity={name: identity(base_sp.encode(lines), merged.encode(lines), lines) for name, lines in
                  {**non_korean, "probes (non-Korean)": plain_probes}.items()},
        other_tokens_per_char={name: {"base": figures(base_sp, lines).tokens_per_char,
                                      "merged": figures(merged, lines).tokens_per_char}
                               for name, lines in non_korean.items()})
    report = result.extra  # this family's other figures
    everything = {**korean, **non_korean, "probes": PROBES}
    report["decode_roundtrip"] = {name: round(sum(merged.decode(ids) == line for ids, line in zip(merged.encode(lines), lines))
                                              / max(len(lines), 1), 6) for name, lines in everything.items()}
    if merged_proto.normalizer_spec.precompiled_charsmap and korean:
        nfd = {}
        for name, lines in korean.items():
            same = [a == b for a, b in zip(merged.encode([unicodedata.normalize("NFD", x) for x in lines]), merged.encode(lines))]
            nfd[name] = round(sum(same) / max(len(same), 1), 6)
        report["nfd_equals_nfc"] = nfd
    if merged_proto.normalizer_spec.precompiled_charsmap:
        # The normalizer must act the same on both sides: probe decomposed (NFD) Korean too.
        for name, lines in korean.items():
            everything[f"{name} (NFD)"] = [unicodedata.normalize("NFD", x) for x in lines]
    if check_hf:
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(str(tokenizer_dir))
        report["hf_class"] = type(hf).__name__
        report["hf_agreement"] = {name: hf_agreement(hf, merged, lines)
                                  for name, lines in tqdm(everything.items(), desc="HF vs SentencePiece", disable=None)}
    examples = [line[:80] for lines in korean.values() for line in lines[:3]] or [p for p in PROBES if any(is_hangul(c) for c in p)][:3]
    report["examples"] = [{"text": t, "base": base_sp.encode(t, out_type=str), "merged": merged.encode(t, out_type=str)}
                          for t in examples]
    if do_sweep and korean:
        report["sweep"] = {name: sweep(base, merged_proto, lines, sweep_steps) for name, lines in korean.items()}
    return result


def summary_lines(report: dict) -> list[str]:
    vocab = report["vocab"]
    lines = [f"vocabulary: {vocab['base_pieces']:,} -> {vocab['merged_pieces']:,} pieces (+{vocab['added_pieces']:,})"]
    merge = report.get("merge") or {}
    if merge:
        lines.append("merge: mode={mode} added={added} skipped: present={skipped_already_present} "
                     "non-script={skipped_not_script} digits={skipped_digits}; unreachable found={unreachable_found} "
                     "intermediates added={intermediates_added} dropped={unreachable_dropped}".format(**merge))
    for name, row in report["korean"].items():
        b, m = row["base"], row["merged"]
        lines.append(f"{Path(name).name}: tokens/char {b['tokens_per_char']:.3f} -> {m['tokens_per_char']:.3f}, "
                     f"tokens/word {b['tokens_per_word']:.2f} -> {m['tokens_per_word']:.2f}, "
                     f"byte tokens {b['byte_token_share']:.1%} -> {m['byte_token_share']:.1%}")
    for name, row in report["identity"].items():
        lines.append(f"{Path(name).name}: {row['share']:.2%} of {row['lines']} lines identical to the base")
    for name, row in (report.get("hf_agreement") or {}).items():
        lines.append(f"HF fast == SentencePiece on {Path(name).name}: {row['share']:.2%} of {row['lines']} lines")
    return lines
