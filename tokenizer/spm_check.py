"""`kocpt tokenizer check` on a SentencePiece directory (`tokenizer.model` + Hugging Face files): ours,
Chinese-LLaMA's, anyone's. Run by tokenizer/check.py (the command) and by the merge on its own output.

Reports every defect:
- ids from SentencePiece vs every other implementation on the given texts and built-in probes (Korean,
  English, code, leading/double spaces, tabs, emoji, NFD Hangul, and each probe right after BOS), with
  every disagreement: `hf_fast` (AutoTokenizer on the directory), `hf_slow` (see below) and llama.cpp
  (with `--gguf FILE`, when `llama_cpp` is importable);
- pieces BPE can never produce (unreachable), pieces scored above the base's merges (Chinese-LLaMA's
  score 0 changes English), byte-fallback coverage, duplicate pieces, the Hugging Face vocabulary size,
  and, with a base, whether English and code get the base's ids.

"HF slow" in transformers 5: there is no slow `LlamaTokenizer` any more (`LlamaTokenizer` is the
tokenizers-backed class and `use_fast=False` is ignored). The only Python, sentencepiece-backed path
left is the generic `SentencePieceBackend`, so that is what the `hf_slow` column runs. `LlamaTokenizer`
itself, which rebuilds its own pipeline from `tokenizer.model`, is shown as `hf_llama_class` for
information: it differs from SentencePiece on texts that start with or contain runs of spaces even for
Llama-2's own tokenizer, and is not what `AutoTokenizer` loads for a directory naming another class.
"""

from __future__ import annotations

from pathlib import Path

import sentencepiece as spm

from tokenizer import BadInput
from tokenizer.comparison import NON_KOREAN_KINDS, PROBES_BY_KIND, identity, read_lines, stdlib_code_lines
from tokenizer.spm_hf_export import byte_pieces_ok
from tokenizer.spm_model import BYTE, NORMAL, USER_DEFINED, ModelProto, is_hangul, load_model
from tokenizer.spm_reachability import unreachable


# ---------------------------------------------------------------------------------------------- id sources

class _Column:
    """One implementation's ids: `encode(texts, bos)`; `note` says what it really is."""

    def __init__(self, name: str, note: str, encode, counts_as_defect: bool = True):
        self.name, self.note, self.encode, self.counts_as_defect = name, note, encode, counts_as_defect


def _hf_columns(directory: Path, proto: ModelProto) -> tuple[list[_Column], list[str]]:
    notes = []
    import transformers
    from transformers import AutoTokenizer, LlamaTokenizer
    from transformers.tokenization_utils_sentencepiece import SentencePieceBackend

    if not (directory / "tokenizer_config.json").is_file():
        notes.append(f"{directory}: no tokenizer_config.json: AutoTokenizer loads it as a generic tokenizer")
    try:
        fast = AutoTokenizer.from_pretrained(str(directory))
    except (OSError, ValueError) as exc:
        raise BadInput(f"{directory}: AutoTokenizer cannot load it ({str(exc).splitlines()[0]})") from None
    spec = proto.trainer_spec
    named = {key: proto.pieces[i].piece for key, i in (("bos_token", spec.bos_id), ("eos_token", spec.eos_id),
                                                        ("unk_token", spec.unk_id)) if 0 <= i < len(proto.pieces)}
    def encoder(tokenizer):
        return lambda texts, bos: [tokenizer(t, add_special_tokens=bos)["input_ids"] for t in texts]

    version = transformers.__version__
    columns = [_Column("hf_fast", f"AutoTokenizer -> {type(fast).__name__} (transformers {version})", encoder(fast))]
    try:
        slow = SentencePieceBackend(vocab_file=str(directory / "tokenizer.model"), legacy=True,
                                    special_tokens_pattern="bos" if spec.bos_id >= 0 else "none", **named)
        columns.append(_Column("hf_slow", f"SentencePieceBackend (transformers {version} has no slow LlamaTokenizer; "
                               "this is its only Python, sentencepiece-backed tokenizer)", encoder(slow)))
    except Exception as exc:  # noqa: BLE001 - reported, the other columns still run
        notes.append(f"hf_slow: SentencePieceBackend cannot load it ({type(exc).__name__}: {str(exc)[:120]})")
    try:
        llama_class = LlamaTokenizer.from_pretrained(str(directory))
        columns.append(_Column("hf_llama_class", "transformers' LlamaTokenizer class (tokenizers-backed, rebuilds its "
                               "own pipeline from tokenizer.model); information only", encoder(llama_class),
                               counts_as_defect=False))
    except Exception as exc:  # noqa: BLE001
        notes.append(f"hf_llama_class: LlamaTokenizer cannot load it ({type(exc).__name__}: {str(exc)[:120]})")
    return columns, notes


def _llama_cpp_column(gguf: str | None) -> tuple[_Column | None, str]:
    try:
        import llama_cpp
    except ImportError:
        return None, "llama.cpp: not checked (llama_cpp is not installed: pip install llama-cpp-python)"
    if not gguf:
        return None, "llama.cpp: not checked (pass --gguf FILE, a GGUF of a model with this tokenizer)"
    model = llama_cpp.Llama(model_path=gguf, vocab_only=True, verbose=False)

    def encode(texts, bos):
        return [model.tokenize(t.encode("utf-8"), add_bos=bos, special=False) for t in texts]

    return _Column("llama_cpp", f"llama.cpp {llama_cpp.__version__} on {gguf}", encode), ""


# ---------------------------------------------------------------------------------------------- checks

def compare_ids(sp: spm.SentencePieceProcessor, bos_id: int, texts: dict[str, list[str]], columns: list[_Column]) -> dict:
    """Every text, without and with BOS, through every column; each disagreement listed."""
    out = {}
    for column in columns:
        rows, disagreements = 0, []
        for kind, lines in texts.items():
            expected = sp.encode(lines)
            for bos in (False, True):
                got = column.encode(lines, bos)
                for text, want, have in zip(lines, expected, got):
                    want = ([bos_id] if bos and bos_id >= 0 else []) + want
                    rows += 1
                    if list(have) != want:
                        disagreements.append({"kind": kind + (" (after BOS)" if bos else ""), "text": text,
                                              "sentencepiece": want, column.name: list(have)})
        out[column.name] = {"note": column.note, "texts": rows, "disagreements": disagreements,
                            "counts_as_defect": column.counts_as_defect}
    return out


def duplicate_pieces(proto: ModelProto) -> list[str]:
    seen, dupes = set(), []
    for piece in proto.pieces:
        if piece.piece in seen:
            dupes.append(piece.piece)
        seen.add(piece.piece)
    return dupes


def score_outranks(proto: ModelProto, base: ModelProto) -> list[dict]:
    """Pieces not in the base scored at or above the base's lowest merge: BPE may apply them before a base merge."""
    merges = [p.score for p in base.pieces if p.type == NORMAL and len(p.piece) > 1]
    floor = min(merges) if merges else float("-inf")
    base_set = {p.piece for p in base.pieces}
    return [{"id": i, "piece": p.piece, "score": p.score} for i, p in enumerate(proto.pieces)
            if p.type in (NORMAL, USER_DEFINED) and p.piece not in base_set and p.score >= floor]


def byte_fallback(proto: ModelProto, sp: spm.SentencePieceProcessor, texts: dict[str, list[str]]) -> dict:
    unk = sp.unk_id()
    lines = [line for kind in texts.values() for line in kind]
    unk_lines = [line for line, ids in zip(lines, sp.encode(lines)) if unk in ids]
    return {"enabled": bool(proto.trainer_spec.byte_fallback), "byte_pieces": sum(p.type == BYTE for p in proto.pieces),
            "all_256_byte_pieces": byte_pieces_ok(proto), "texts_with_unk": unk_lines}


def check(directory: str | Path, base_path: str | Path | None = None, text_files: list[str] = (),
          code_files: int = 20, max_lines: int = 2000, gguf: str | None = None) -> dict:
    directory = Path(directory)
    proto = load_model(directory)
    base = load_model(base_path) if base_path else None
    dupes = duplicate_pieces(proto)
    if dupes:  # sentencepiece refuses such a model, so nothing else can run
        return {"tokenizer": str(directory), "pieces": len(proto.pieces), "ids": {}, "duplicates": dupes,
                "unreachable": [], "unreachable_in_base_itself": 0,
                "notes": ["sentencepiece refuses to load a model with duplicate pieces: nothing else was checked"],
                "defects": [f"{len(dupes)} duplicate pieces: {', '.join(map(repr, dupes[:10]))}"]}
    try:
        sp = spm.SentencePieceProcessor(model_proto=proto.SerializeToString())
    except RuntimeError as exc:  # e.g. duplicate pieces, byte pieces without byte_fallback
        raise BadInput(f"{directory}: sentencepiece cannot load tokenizer.model ({str(exc).splitlines()[0]})") from None
    texts = dict(PROBES_BY_KIND)
    for file in text_files:
        texts[f"file {file}"] = read_lines(file, max_lines)
    columns, notes = _hf_columns(directory, proto)
    cpp, cpp_note = _llama_cpp_column(gguf)
    if cpp:
        columns.append(cpp)
    else:
        notes.append(cpp_note)

    normal = [i for i, p in enumerate(proto.pieces) if p.type == NORMAL]
    dead = unreachable(proto, normal)
    # A base piece that was already unreachable in the base is not the merge's doing; one the merge made
    # unreachable (a higher-scored added piece takes its characters first) is.
    dead_in_base = set()
    if base is not None:
        base_normal = [i for i, p in enumerate(base.pieces) if p.type == NORMAL]
        dead_in_base = {base.pieces[i].piece for i in unreachable(base, base_normal)}
    report: dict = {
        "tokenizer": str(directory), "base": str(base_path) if base_path else None, "pieces": len(proto.pieces),
        "trainer_spec_vocab_size": proto.trainer_spec.vocab_size,
        "ids": compare_ids(sp, proto.trainer_spec.bos_id, texts, columns),
        "unreachable": [{"id": i, "piece": proto.pieces[i].piece, "bpe_gives": seg} for i, seg in dead.items()
                        if proto.pieces[i].piece not in dead_in_base],
        "unreachable_in_base_itself": len(dead_in_base),
        "duplicates": duplicate_pieces(proto),
        "byte_fallback": byte_fallback(proto, sp, texts),
        "notes": notes,
    }
    from transformers import AutoTokenizer

    report["hf_vocab_size"] = len(AutoTokenizer.from_pretrained(str(directory)))
    if base is not None:
        report["score_outranks_base"] = score_outranks(proto, base)
        candidates = [t for kind in NON_KOREAN_KINDS for t in PROBES_BY_KIND[kind]] + stdlib_code_lines(code_files, max_lines)
        candidates += [t for name, lines in texts.items() if name.startswith("file ") for t in lines]
        non_korean = [t for t in candidates if not any(is_hangul(c) for c in t)]
        base_sp = spm.SentencePieceProcessor(model_proto=base.SerializeToString())
        report["identity"] = identity(base_sp.encode(non_korean), sp.encode(non_korean), non_korean, listed=True)
    else:
        notes.append("score and English/code identity: not checked (pass --base, the tokenizer it was merged into)")
    report["defects"] = defects(report)
    return report


def defects(report: dict) -> list[str]:
    found = []
    for name, row in report["ids"].items():
        if row["disagreements"] and row["counts_as_defect"]:
            found.append(f"{name} differs from SentencePiece on {len(row['disagreements'])} of {row['texts']} encodings")
    if report["unreachable"]:
        found.append(f"{len(report['unreachable'])} pieces BPE can never produce (unreachable)")
    if report.get("score_outranks_base"):
        found.append(f"{len(report['score_outranks_base'])} added pieces score at or above the base's merges "
                     "(they can change the base's tokenization)")
    if report["duplicates"]:
        found.append(f"{len(report['duplicates'])} duplicate pieces")
    fallback = report["byte_fallback"]
    if not (fallback["enabled"] and fallback["all_256_byte_pieces"]):
        found.append(f"byte fallback incomplete (enabled={fallback['enabled']}, {fallback['byte_pieces']} byte pieces)")
    if fallback["texts_with_unk"]:
        found.append(f"{len(fallback['texts_with_unk'])} texts encode to <unk>")
    if report["hf_vocab_size"] != report["pieces"]:
        found.append(f"Hugging Face vocabulary has {report['hf_vocab_size']:,} tokens, tokenizer.model {report['pieces']:,}")
    if report["trainer_spec_vocab_size"] != report["pieces"]:
        found.append(f"trainer_spec.vocab_size {report['trainer_spec_vocab_size']:,} != {report['pieces']:,} pieces "
                     "(tools that trust it, e.g. converters, get the size wrong)")
    identity_row = report.get("identity")
    if identity_row and identity_row["differing"]:
        found.append(f"{len(identity_row['differing'])} of {identity_row['lines']} English/code lines get ids "
                     "different from the base's")
    return found


def compact(report: dict) -> dict:
    """The figures that go into the merge's report.json."""
    return {
        "defects": report["defects"],
        "ids": {name: {"encodings": row["texts"], "disagreements": len(row["disagreements"]), "note": row["note"]}
                for name, row in report["ids"].items()},
        "unreachable": len(report["unreachable"]),
        "score_outranks_base": len(report.get("score_outranks_base") or []),
        "identity": {"lines": report["identity"]["lines"], "differing": len(report["identity"]["differing"])}
        if "identity" in report else None,
        "notes": report["notes"],
    }


def summary_lines(report: dict, every_disagreement: bool = True) -> list[str]:
    lines = [f"{report['tokenizer']}: {report['pieces']:,} pieces"]
    for name, row in report["ids"].items():
        lines.append(f"{name} == sentencepiece on {row['texts'] - len(row['disagreements'])} of {row['texts']} "
                     f"encodings (each text without and with BOS) [{row['note']}]")
        for item in row["disagreements"] if every_disagreement else []:
            lines.append(f"  {item['kind']}: {item['text']!r}: sentencepiece {item['sentencepiece']} {name} {item[name]}")
    lines += report["notes"]
    lines.append(f"unreachable pieces: {len(report['unreachable'])} (already unreachable in the base: "
                 f"{report['unreachable_in_base_itself']})")
    if "score_outranks_base" in report:
        lines.append(f"pieces scored above the base's merges: {len(report['score_outranks_base'])}")
        lines.append(f"English/code lines identical to the base: "
                     f"{report['identity']['lines'] - len(report['identity']['differing'])} of {report['identity']['lines']}")
    lines.append("defects: " + ("; ".join(report["defects"]) if report["defects"] else "none"))
    return lines
