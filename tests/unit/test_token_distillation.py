"""`--input-rows distilled`: where two tokenizations of one text line up, the windows cut there, and resize
writing distilled rows (a tied base untied, every old row and the LM head untouched) into a model whose own
hidden states then give the error the report states. Both tokenizer families; tiny models, seconds."""

from __future__ import annotations

import contextlib
import io
import shutil
from unittest.mock import patch

import numpy as np
import pytest
import torch

from checkpoints.config import ResizeSection
from checkpoints.resize import ResizeJob, main, resize
from checkpoints.tiny_llama import tiny_llama_config, write_tiny_llama
from checkpoints.token_distillation import aligned_boundaries, cut_windows, distillation_windows, split_windows
from mcore_llama.hf_checkpoint import HFCheckpoint
from stagekit.paths import KO_TRAIN, LLAMA2_TOKENIZER
from tests.support.models import byte_level_dir, tied_llama2_resize_inputs
from tokenizer.token_encoder import TokenEncoder

NEW_PIECES = ["▁아", "▁이", "▁문", "하는", "▁나", "▁그"]  # pairs of Llama-2 pieces, common in the text


def test_boundaries_pair_the_last_positions_that_end_at_the_same_byte():
    base_ends = np.array([0, 1, 3, 3, 6, 7])  # a BOS, then tokens of 1, 2, 0, 3 and 1 bytes
    merged_ends = np.array([0, 3, 6, 7])
    base, merged = aligned_boundaries(base_ends, merged_ends)
    assert base.tolist() == [3, 4, 5] and merged.tolist() == [1, 2, 3]  # offset 0 (the BOS) is not a boundary


def test_windows_cut_at_boundaries_within_the_context():
    base_bytes = np.array([0, 1, 2, 3])  # id -> bytes
    merged_bytes = np.array([0, 1, 2, 3, 3, 4])
    base_ids, merged_ids = [0, 1, 2, 3, 1, 2, 1, 1], [0, 3, 4, 5]  # ends ... 11 bytes vs 0 3 6 10: not one text
    assert cut_windows(base_ids, merged_ids, base_bytes, merged_bytes, context=4) is None
    # Base ends 0 1 3 6 7 9, merged ends 0 3 6 7 8 9: boundaries at bytes 3, 6, 7 and 9.
    windows = cut_windows([0, 1, 2, 3, 1, 2], [0, 3, 4, 1, 1, 1], base_bytes, merged_bytes, context=4)
    assert [(w.base_ids, w.merged_ids, w.base_positions, w.merged_positions) for w in windows] == [
        ([0, 1, 2, 3], [0, 3, 4], [2, 3], [1, 2]),  # at most 4 base tokens: cut after byte 6
        ([1, 2], [1, 1, 1], [0, 1], [0, 2]),  # bytes 7 and 9; merged's byte-8 end is no boundary (base has none there)
    ]


@pytest.fixture(scope="module")
def sentencepiece_work(tmp_path_factory):
    # score 0.0: the new pieces are read wherever they fit
    return tied_llama2_resize_inputs(tmp_path_factory.mktemp("distillation"), NEW_PIECES, layers=2, text_lines=120,
                                     score=0.0)


def _documents(path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_aligned_prefixes_spell_the_same_text_in_both_tokenizations(sentencepiece_work):
    base, merged = TokenEncoder.load(LLAMA2_TOKENIZER), TokenEncoder.load(sentencepiece_work["merged"])
    windows, used, skipped = distillation_windows(_documents(sentencepiece_work["text"])[:20], base, merged,
                                                  max_tokens=10**9, context=64)
    assert used == 20 and skipped == 0 and len(windows) > 1
    assert any(1 in w.base_ids[1:] for w in windows)  # documents are packed: a BOS inside a window
    assert any(i >= 32000 for w in windows for i in w.merged_ids)  # the new pieces are read
    for window in windows:
        assert len(window.base_ids) <= 64 or len(window.base_positions) == 1
        assert window.base_positions[-1] == len(window.base_ids) - 1  # a window ends at a boundary ...
        assert window.merged_positions[-1] == len(window.merged_ids) - 1
        for i, j in zip(window.base_positions, window.merged_positions):  # ... and every boundary is the same text
            spelled = base.processor.Decode(window.base_ids[:i + 1]), merged.processor.Decode(window.merged_ids[:j + 1])
            assert spelled[0] == spelled[1], spelled
    assert sum(len(w.merged_ids) for w in windows) < sum(len(w.base_ids) for w in windows)


def test_distilled_resize_unties_trains_only_the_new_input_rows_and_reports_its_error(sentencepiece_work):
    from transformers import LlamaForCausalLM

    root = sentencepiece_work["root"]
    section = ResizeSection(input_rows="distilled", calibration_text=str(sentencepiece_work["text"]),
                            distillation_tokens=2000, distillation_lr=1e-2)
    with patch("checkpoints.token_distillation.CONTEXT", 64):  # ~30 windows: the last 3 held out
        report = resize(ResizeJob(model=sentencepiece_work["model"], tokenizer=sentencepiece_work["merged"],
                                  output=root / "distilled", section=section), progress=False)
    resize(ResizeJob(model=sentencepiece_work["model"], tokenizer=sentencepiece_work["merged"], output=root / "fvt",
                     section=ResizeSection(untie=True)), progress=False)
    assert report["untied"] and report["input_rows"] == "distilled"
    distillation = report["distillation"]
    assert distillation["skipped_documents"] == 0
    assert distillation["mse_after"] < 0.5 * distillation["mse_before"]
    assert distillation["flops"] > 0

    out, fvt = HFCheckpoint(root / "distilled"), HFCheckpoint(root / "fvt")
    old = HFCheckpoint(sentencepiece_work["model"]).read("model.embed_tokens.weight")
    embedding, fvt_embedding = out.read("model.embed_tokens.weight"), fvt.read("model.embed_tokens.weight")
    assert torch.equal(embedding[:32000], old)  # old rows bit for bit
    assert torch.equal(out.read("lm_head.weight"), fvt.read("lm_head.weight"))  # the head is untie's: the FVT rows
    assert all(torch.equal(out.read(n), fvt.read(n)) for n in fvt.tensors if n not in ("model.embed_tokens.weight",))
    base, merged = TokenEncoder.load(LLAMA2_TOKENIZER), TokenEncoder.load(root / "distilled")
    windows, _, _ = distillation_windows(_documents(sentencepiece_work["text"]), base, merged, 2000, 64)
    seen = {i for w in windows for i in w.merged_ids if i >= 32000}
    for k in range(32000, 32000 + len(NEW_PIECES)):  # rows the text shows moved; the others kept their init
        assert torch.equal(embedding[k], fvt_embedding[k]) != (k in seen), k

    # The written model's own states give the error the report states: its rows are the ones trained.
    trained, measured = split_windows(windows)
    assert distillation["held_out_windows"] == len(windows) - len(trained) > 0 and measured == windows[len(trained):]
    assert sum(len(w.merged_ids) for w in windows) >= 2000  # the budget, held-out windows included
    assert distillation["merged_tokens"] == sum(len(w.merged_ids) for w in trained)
    model = LlamaForCausalLM.from_pretrained(root / "distilled", dtype=torch.float32).eval()
    squared = count = 0
    with torch.no_grad():
        for w in measured:
            teacher = model.model(input_ids=torch.tensor([w.base_ids])).last_hidden_state[0, w.base_positions]
            student = model.model(input_ids=torch.tensor([w.merged_ids])).last_hidden_state[0, w.merged_positions]
            squared += float((student - teacher).pow(2).sum())
            count += teacher.numel()
    assert abs(squared / count - distillation["mse_after"]) < 1e-4 * distillation["mse_after"]


def test_text_without_new_tokens_gives_a_student_equal_to_its_teacher(sentencepiece_work, tmp_path):
    english = tmp_path / "english.txt"
    english.write_text("The model reads this sentence the same way twice.\nNo Korean piece is here.\n")
    report = resize(ResizeJob(model=sentencepiece_work["model"], tokenizer=sentencepiece_work["merged"],
                              output=tmp_path / "out", section=ResizeSection(input_rows="distilled",
                                                                             calibration_text=str(english))),
                    progress=False)
    distillation = report["distillation"]
    assert distillation["base_tokens"] == distillation["merged_tokens"] == distillation["aligned_positions"] + 2  # BOSes
    assert distillation["mse_before"] == 0.0 and distillation["mse_after"] == 0.0
    plain = ResizeJob(model=sentencepiece_work["model"], tokenizer=sentencepiece_work["merged"],
                      output=tmp_path / "plain", section=ResizeSection(untie=True))
    resize(plain, progress=False)
    assert torch.equal(HFCheckpoint(tmp_path / "out").read("model.embed_tokens.weight"),
                       HFCheckpoint(tmp_path / "plain").read("model.embed_tokens.weight"))  # no gradient: no move


def test_byte_level_bases_distill_too(tmp_path):
    from tokenizer import merge as merge_cmd
    from tokenizer.bpe_merge import train_byte_level

    base = byte_level_dir(tmp_path / "base")
    korean = _documents(KO_TRAIN / "chatbot_qa.txt")
    (tmp_path / "ko.json").write_text(train_byte_level(korean[:300], base / "tokenizer.json", 600), encoding="utf-8")
    with contextlib.redirect_stdout(io.StringIO()):
        assert merge_cmd.main(["--base", str(base), "--add", str(tmp_path / "ko.json"), "--output", str(tmp_path / "tok"),
                               "--eval-code-files", "0", "--no-plot"]) == 0
    rows = TokenEncoder.load(base).vocab_size
    config = tiny_llama_config(vocab_size=rows, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                               num_attention_heads=2, tie_word_embeddings=True)
    model = write_tiny_llama(tmp_path / "model", config)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(base / name, model / name)
    text = tmp_path / "korean.txt"
    text.write_text("\n".join(korean[300:400]) + "\n", encoding="utf-8")
    report = resize(ResizeJob(model=model, tokenizer=tmp_path / "tok", output=tmp_path / "out", section=ResizeSection(
        input_rows="distilled", calibration_text=str(text), distillation_tokens=1500, distillation_lr=1e-2)), progress=False)
    distillation = report["distillation"]
    assert report["tokenizer_kind"] == "byte-level BPE" and report["untied"] and distillation["skipped_documents"] == 0
    assert distillation["merged_tokens"] < distillation["base_tokens"]  # the merged tokenizer reads Korean in fewer
    assert distillation["mse_after"] < 0.5 * distillation["mse_before"]
    # Byte-level tokens may end inside a character: the boundaries are bytes, and each spells the same bytes.
    base_encoder, merged_encoder = TokenEncoder.load(base), TokenEncoder.load(tmp_path / "out")
    windows, _, _ = distillation_windows(korean[300:310], base_encoder, merged_encoder, 10**9, 10**9)
    for w in windows:
        for i, j in zip(w.base_positions, w.merged_positions):
            assert _bytes(base_encoder, w.base_ids[:i + 1]) == _bytes(merged_encoder, w.merged_ids[:j + 1])


def _bytes(encoder, ids: list[int]) -> bytes:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    byte_of = {char: byte for byte, char in bytes_to_unicode().items()}
    return bytes(byte_of[c] for i in ids for c in encoder.processor.id_to_token(i))


def test_distillation_refusals_are_one_line(sentencepiece_work, tmp_path, capsys):
    argv = ["--model", str(sentencepiece_work["model"]), "--tokenizer", str(sentencepiece_work["merged"]),
            "--output", str(tmp_path / "out"), "--input-rows", "distilled"]
    for extra, needle in (([], "input_rows distilled needs resize.calibration_text"),
                          (["--calibration-text", str(sentencepiece_work["text"]), "--distillation-tokens", "0"],
                           "resize.distillation_tokens must be >= 1"),
                          (["--calibration-text", str(sentencepiece_work["text"]),
                            "--set", "checkpoints.resize.distillation_lr=0"], "resize.distillation_lr must be > 0")):
        assert main(argv + extra, prog="kocpt checkpoints resize") == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
