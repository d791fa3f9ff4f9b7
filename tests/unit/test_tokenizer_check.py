"""`kocpt tokenizer check`: passes our merge, flags a Chinese-LLaMA-style score-0 merge and other defects.

Real inputs: Llama-2's tokenizer.model from ../shared/data and a small Korean BPE model trained on ko-train.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stagekit.paths import EN_HELDOUT, KO_HELDOUT, KO_TRAIN, LLAMA2_TOKENIZER, REPO
from tokenizer import check as check_cmd
from tokenizer import merge as merge_cmd
from tokenizer import train as train_cmd
from tokenizer.spm_hf_export import write_hf_files
from tokenizer.spm_model import BYTE, load_model

LLAMA = LLAMA2_TOKENIZER.parent


@pytest.fixture(scope="module")
def merges(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("check")
    prefix = root / "ko4k"
    assert train_cmd.main(["--input", str(KO_TRAIN), "--vocab-size", "4000", "--output", str(prefix)]) == 0
    out = {}
    for mode in ("safe", "chinese-llama"):
        out[mode] = root / mode
        assert merge_cmd.main(["--base", str(LLAMA), "--add", f"{prefix}.model", "--output", str(out[mode]), "--mode", mode,
                               "--eval-code-files", "5", "--eval-max-lines", "50", "--no-plot"]) == 0
    return out


def run_check(argv, capsys) -> tuple[int, dict | None, str, str]:
    json_path = Path(argv[0]).parent / f"{Path(argv[0]).name}-check.json"
    code = check_cmd.main([*argv, "--json", str(json_path)])
    out, err = capsys.readouterr()
    report = json.loads(json_path.read_text()) if json_path.is_file() else None
    return code, report, out, err


def test_passes_our_merge(merges, capsys):
    code, report, out, _ = run_check([str(merges["safe"]), "--base", str(LLAMA), "--texts", str(KO_HELDOUT),
                                      "--texts", str(EN_HELDOUT), "--max-lines", "300"], capsys)
    assert code == 0, out
    assert report["defects"] == []
    for name in ("hf_fast", "hf_slow"):
        assert report["ids"][name]["disagreements"] == []
        assert report["ids"][name]["texts"] > 2 * 600  # every probe and line, without and with BOS
    assert report["unreachable"] == [] and report["score_outranks_base"] == [] and report["duplicates"] == []
    assert report["identity"]["differing"] == [] and report["identity"]["lines"] > 300
    assert report["byte_fallback"]["all_256_byte_pieces"] and report["byte_fallback"]["texts_with_unk"] == []
    assert "defects: none" in out
    # The merge ran the same check and kept its summary.
    merged_report = json.loads((merges["safe"] / "report.json").read_text())
    assert merged_report["check"]["defects"] == [] and merged_report["check"]["ids"]["hf_fast"]["disagreements"] == 0


def test_flags_chinese_llama_score_zero_merge(merges, capsys):
    code, report, out, _ = run_check([str(merges["chinese-llama"]), "--base", str(LLAMA)], capsys)
    assert code == 1
    added = len(load_model(merges["chinese-llama"]).pieces) - 32000
    assert len(report["score_outranks_base"]) == added  # every score-0 piece outranks Llama's merges
    # Score 0 takes characters from Llama's own long pieces: they become unreachable and English changes.
    unreachable = {row["piece"] for row in report["unreachable"]}
    assert "................" in unreachable
    assert any("................" in row["text"] for row in report["identity"]["differing"])
    assert any("score at or above the base's merges" in d for d in report["defects"])
    assert any("trainer_spec.vocab_size 32,000" in d for d in report["defects"])
    assert "defects: " in out and "defects: none" not in out
    merged_report = json.loads((merges["chinese-llama"] / "report.json").read_text())
    assert merged_report["check"]["score_outranks_base"] == added


def test_hf_columns_say_what_they_are(merges, capsys):
    _, report, out, _ = run_check([str(merges["safe"])], capsys)
    assert "no slow LlamaTokenizer" in report["ids"]["hf_slow"]["note"]
    assert "TokenizersBackend" in report["ids"]["hf_fast"]["note"]
    # transformers 5's LlamaTokenizer class drops a leading space: shown, but not a defect of the directory.
    llama_class = report["ids"]["hf_llama_class"]
    assert not llama_class["counts_as_defect"]
    assert any(row["text"] == " hi" for row in llama_class["disagreements"])
    assert "' hi'" in out
    assert any("llama.cpp: not checked" in note for note in report["notes"]) or "llama_cpp" in report["ids"]
    assert any("--base" in note for note in report["notes"])


def test_flags_a_directory_that_loads_as_llama_tokenizer(merges, tmp_path, capsys):
    # Someone's directory: tokenizer.model and a config naming LlamaTokenizer, no tokenizer.json.
    user = tmp_path / "user"
    user.mkdir()
    shutil.copy(merges["safe"] / "tokenizer.model", user / "tokenizer.model")
    (user / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer"}))
    code, report, out, _ = run_check([str(user)], capsys)
    assert code == 1
    rows = report["ids"]["hf_fast"]["disagreements"]
    assert any(row["text"] == " hi" and row["sentencepiece"] == [29871, 7251] for row in rows)
    assert any(d.startswith("hf_fast differs from SentencePiece") for d in report["defects"])


def test_flags_missing_byte_fallback(merges, tmp_path, capsys):
    proto = load_model(merges["safe"])
    proto.trainer_spec.byte_fallback = False  # and the byte pieces gone: sentencepiece refuses one without the other
    kept = [p for p in proto.pieces if p.type != BYTE]
    del proto.pieces[:]
    proto.pieces.extend(kept)
    proto.trainer_spec.vocab_size = len(kept)
    broken = tmp_path / "nofallback"
    broken.mkdir()
    (broken / "tokenizer.model").write_bytes(proto.SerializeToString())
    write_hf_files(proto, broken)
    code, report, _, _ = run_check([str(broken)], capsys)
    assert code == 1
    assert not report["byte_fallback"]["enabled"]
    assert report["byte_fallback"]["texts_with_unk"]  # emoji become <unk>
    assert any("byte fallback incomplete" in d for d in report["defects"])


def test_flags_duplicate_pieces(merges, tmp_path, capsys):
    proto = load_model(merges["safe"])
    last = proto.pieces[-1].piece
    proto.pieces.add(piece=last, score=-1e6)
    dupes = tmp_path / "dupes"
    dupes.mkdir()
    (dupes / "tokenizer.model").write_bytes(proto.SerializeToString())
    code, report, out, _ = run_check([str(dupes)], capsys)
    assert code == 1 and report["duplicates"] == [last]
    assert "1 duplicate pieces" in out and "nothing else was checked" in out


def test_bad_input_is_one_line(tmp_path, merges, capsys):
    for argv, needle in (([str(tmp_path / "nope")], "not a tokenizer directory"),
                         ([str(tmp_path)], "no tokenizer.model"),
                         ([str(merges["safe"]), "--texts", str(tmp_path / "missing.txt")], "file not found")):
        assert check_cmd.main(argv) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and needle in err, err


@pytest.mark.slow
@pytest.mark.parametrize("argv", [
    [sys.executable, "tokenizer/check.py", "--help"],
    [str(Path(sys.executable).with_name("kocpt")), "tokenizer", "check", "--help"],
])
def test_entry_points(argv):
    result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout and "--base" in result.stdout
