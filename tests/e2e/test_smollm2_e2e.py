"""SmolLM2-135M (real pretrained weights) through expand -> FVT resize -> convert -> CPT at TP=3 (9 heads: TP=2 cannot split them) -> back -> eval -> GGUF.

The short version of benchmarks/smollm2.py (same code, fewer steps and documents).
"""

from __future__ import annotations

import pytest

from benchmarks.smollm2 import build_parser, run_pipeline, table
from checkpoints.smollm2 import smollm2_hf_dir
from serving.gguf_export import main as export_gguf
from stagekit.paths import EN_HELDOUT, KO_HELDOUT
from tests.support.llama_cpp import ensure_llama_cpp
from tokenizer.bpe_encoder import ByteLevelEncoder
from tokenizer.token_encoder import TokenEncoder


@pytest.mark.network
def test_byte_level_encoder_counts_characters_of_smollm2_tokens():
    encoder = TokenEncoder.load(smollm2_hf_dir())
    assert isinstance(encoder, ByteLevelEncoder) and encoder.vocab_size == 49152
    assert (encoder.bos_id, encoder.eos_id) == (1, 2)  # <|im_start|>, <|im_end|> of its tokenizer_config.json
    lengths = encoder.char_lengths()
    texts = ["안녕하세요, 세계! hello 😀 naïve", "def f(x):\n    return x ** 2"]
    for text, ids in zip(texts, encoder.encode_batch(texts)):
        assert int(lengths[ids].sum()) == len(text)
    assert lengths[[1, 2, 0]].tolist() == [0, 0, 0]  # special tokens carry no text


@pytest.mark.network
@pytest.mark.slow
def test_smollm2_expanded_resized_trained_at_tp3_exported_and_evaluated(tmp_path, capsys):
    settings = build_parser().parse_args(["--steps", "3", "--micro-batch", "2", "--seq-length", "64", "--eval-docs", "8",
                                          "--train-lines", "900", "--context", "128", "--lr", "3e-4",
                                          "--english-replay", "0", "--eval-interval", "0", "--eval-iters", "1",
                                          "--tensor-parallel", "3", "--cpt-arms", "fvt", "unexpanded",
                                          # the arms asserted below (mean rows: tests/unit/test_checkpoints_resize.py;
                                          # hf-default: tests/e2e/test_ablation.py; distillation alone:
                                          # tests/unit/test_token_distillation.py)
                                          "--step0-arms", "fvt", "random", "calibrated", "untied", "distilled-calibrated",
                                          "--calibration-lines", "300", "--calibration-tokens", "2048",
                                          "--distillation-tokens", "1024", "--distillation-epochs", "1"])
    result = run_pipeline(tmp_path, settings)
    print(table(result))
    step0, after = result["step0"], result["after_cpt"]
    base = step0["base"]
    # English does not move at step 0: every old id and every English tokenization is unchanged
    assert abs(step0["fvt"]["english"]["bpc"] / base["english"]["bpc"] - 1) <= 0.01, step0
    # Korean is cut into fewer tokens, and every init asked for is reported
    assert step0["fvt"]["korean"]["tokens_per_char"] < 0.5 * base["korean"]["tokens_per_char"]
    assert set(step0) == {"base", "fvt", "random", "calibrated", "untied", "distilled-calibrated"}
    # FVT starts closer to the base's Korean than random rows do; calibrated output rows closer still
    assert step0["calibrated"]["korean"]["bpc"] < step0["fvt"]["korean"]["bpc"] < step0["random"]["korean"]["bpc"]
    assert result["calibration"]["tokens"] == 2048
    # Distilled input rows bring the held-out hidden states closer to the base's reading; with the calibrated head
    # on top, Korean starts closer to the base than FVT
    distillation = result["distillation"]
    assert distillation["relative_error_after"] < distillation["relative_error_before"], distillation
    assert step0["distilled-calibrated"]["korean"]["bpc"] < step0["fvt"]["korean"]["bpc"]
    # An LM head of its own that starts as the embedding gives the tied model's predictions exactly
    assert step0["untied"]["korean"]["bpc"] == pytest.approx(step0["fvt"]["korean"]["bpc"], abs=1e-6)
    # both models trained and came back; the expanded one's loss falls over the short run
    runs = result["runs"]
    assert runs["expanded-fvt"]["last_loss"] < runs["expanded-fvt"]["first_loss"], runs
    assert set(after) == {"expanded-fvt", "unexpanded"}
    # each run measured validation bits/char of the same held-back documents at its end
    assert all(run["val_bpc"] and run["val_bpc"][-1][0] == 3 and 0 < run["val_bpc"][-1][1] < 30 for run in runs.values()), runs
    # the trained, expanded model also goes to llama.cpp: GGUF, whose ids and log-probs the export checks against HF
    ensure_llama_cpp()
    gguf = tmp_path / "expanded-fvt-cpt.gguf"
    code = export_gguf(["--model", str(tmp_path / "expanded-fvt-cpt-hf"), "--output", str(gguf), "--outtype", "f32",
                        "--texts", str(KO_HELDOUT), "--texts", str(EN_HELDOUT)], prog="kocpt export gguf")
    printed = capsys.readouterr().out
    assert code == 0 and gguf.is_file() and "defects: none" in printed, printed[-3000:]
    # NOT asserted (not reached, see benchmarks/README): the expanded model's Korean bits/char below the
    # unexpanded one's after the same tokens (benchmark, 102,400 tokens: 6.03 vs 5.45).
