"""Korean merges on the real Llama-3 tokenizer (tokenizer/llama3_base.py, from Meta's llama-models wheel):
its ids against Meta's own tiktoken-based Tokenizer class, then train.py --base + merge.py on ko-train,
and resize's rows == ids contract on a tiny model with Llama-3's 128,256 rows."""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from checkpoints import resize as resize_cmd
from stagekit.paths import EN_HELDOUT, KO_HELDOUT, KO_TRAIN
from stagekit.wheels import cache_dir, pinned_wheel
from tokenizer import llama3_base
from tokenizer import merge as merge_cmd
from tokenizer import train as train_cmd
from tokenizer.bpe_merge import append_merges, is_korean_token, merges_only
from tokenizer.comparison import PROBES, stdlib_code_lines

BASE_IDS = 128256
CODE = ['def f(x):\n    return {"a": [1, 2.5e-3]}  # comment', "for (int i = 0; i < n; ++i) { s += a[i]; }",
        "SELECT * FROM t WHERE name = 'x';", "emoji 🦙🚀 ✅ 👍🏽 \u200d 👨‍👩‍👧‍👦 🇰🇷", "  \t\n\n   ", "a\r\nb",
        "日本語と中文とрусский", "I'M SURE THEY'LL've", "x" * 3000, "１２３ ＡＢＣ"]


def has_hangul(text: str) -> bool:
    return any("\uac00" <= c <= "\ud7a3" or "\u3130" <= c <= "\u318f" or "\u1100" <= c <= "\u11ff" for c in text)


@pytest.fixture(scope="module")
def llama3() -> Path:
    return llama3_base.llama3_tokenizer_dir()


@pytest.fixture(scope="module")
def meta(tmp_path_factory):
    """Meta's own Tokenizer class (llama_models/llama3/tokenizer.py over tiktoken), from the same wheel."""
    root = tmp_path_factory.mktemp("llama_models")
    wheel = pinned_wheel(llama3_base.WHEEL, llama3_base.WHEEL_VERSION, cache_dir(), "6.6 MB")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(root, [n for n in archive.namelist() if n.startswith("llama_models/")])
    sys.path.insert(0, str(root))
    try:
        from llama_models.llama3.tokenizer import Tokenizer
    finally:
        sys.path.remove(str(root))
    return Tokenizer(root / "llama_models" / "llama3" / "tokenizer.model")


@pytest.mark.network
def test_hf_directory_gives_meta_tiktoken_ids(llama3, meta, tmp_path, capsys):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(llama3)
    assert len(hf) == BASE_IDS == meta.n_words
    assert hf.get_vocab() | meta.special_tokens == hf.get_vocab()  # all 256 specials, at Meta's ids
    assert {t: hf.convert_tokens_to_ids(t) for t in meta.special_tokens} == meta.special_tokens
    assert (hf.bos_token, hf.bos_token_id, hf.eos_token, hf.eos_token_id) == ("<|begin_of_text|>", 128000, "<|end_of_text|>", 128001)
    assert {i for i, t in hf.added_tokens_decoder.items() if t.special} == set(meta.special_tokens.values())
    texts = {"korean": KO_HELDOUT.read_text(encoding="utf-8").splitlines(),
             "english": EN_HELDOUT.read_text(encoding="utf-8").splitlines(),
             "code": stdlib_code_lines(40, 2000), "edge": CODE + PROBES}
    for name, lines in texts.items():
        ours = hf(lines, add_special_tokens=False)["input_ids"]
        assert ours == [meta.encode(line, bos=False, eos=False) for line in lines], name
    assert hf("안녕하세요")["input_ids"] == meta.encode("안녕하세요", bos=True, eos=False)
    assert hf.encode("<|eot_id|>hi", add_special_tokens=False) == meta.encode("<|eot_id|>hi", bos=False, eos=False, allowed_special="all")
    assert not (llama3 / "tokenizer.model").exists() and "Llama 3 Community License" in (llama3 / "LLAMA3_NOTICE.txt").read_text()
    # the command: a copy of the cached directory; an existing --output is refused in one line
    assert llama3_base.main(["--output", str(tmp_path / "l3")]) == 0
    assert (tmp_path / "l3" / "tokenizer.json").read_bytes() == (llama3 / "tokenizer.json").read_bytes()
    capsys.readouterr()
    assert llama3_base.main(["--output", str(tmp_path / "l3")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists" in err


def test_read_spec_refuses_a_changed_tokenizer_py():
    with pytest.raises(llama3_base.BadInput, match="no pat_str"):
        llama3_base.read_spec("class Tokenizer:\n    pat_str = 'x'\n")


def test_append_merges_pins_specials_that_lie_after_the_model_vocabulary():
    """tokenizers re-numbers an added token missing from the model's vocabulary on load (Llama-3's specials)."""
    from tokenizers import Tokenizer

    spec = {"version": "1.0", "added_tokens": [{"id": 3, "content": "<s>", "single_word": False, "lstrip": False,
                                                "rstrip": False, "normalized": False, "special": True}],
            "normalizer": None, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                                                  "use_regex": True},
            "post_processor": None, "decoder": None,
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                      "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": [["a", "b"]]}}
    assert append_merges(spec, [("ab", "b")]) == 4
    loaded = Tokenizer.from_str(json.dumps(spec))
    assert (loaded.token_to_id("<s>"), loaded.token_to_id("abb")) == (3, 4)
    assert [t.value for t in merges_only(spec).tokenize("abb")] == ["abb"]
    spec["model"]["vocab"]["gap"] = 9
    with pytest.raises(llama3_base.BadInput, match="without gaps"):
        append_merges(spec, [("abb", "b")])


@pytest.fixture(scope="module")
def merged(llama3, tmp_path_factory) -> tuple[Path, dict, str]:
    root = tmp_path_factory.mktemp("llama3bpe")
    assert train_cmd.main(["--input", str(KO_TRAIN), "--vocab-size", "4000", "--output", str(root / "ko4k"),
                           "--base", str(llama3)]) == 0
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert merge_cmd.main(["--base", str(llama3), "--add", str(root / "ko4k.json"), "--output", str(root / "tok"),
                               "--eval-korean", str(KO_HELDOUT), "--eval-english", str(EN_HELDOUT),
                               "--eval-code-files", "40", "--eval-max-lines", "2000", "--no-plot"]) == 0
    return root / "tok", json.loads((root / "tok" / "report.json").read_text()), out.getvalue()


@pytest.mark.network
@pytest.mark.slow
def test_korean_merges_on_llama3_keep_every_base_id(llama3, meta, merged):
    from transformers import AutoTokenizer

    tok_dir, report, printed = merged
    ko = report["korean"][str(KO_HELDOUT)]
    # Measured: 0.638 -> 0.593 tokens per character with 4,000 merges (16,000: 0.530).
    assert ko["base"]["tokens_per_char"] > 0.62 and ko["merged"]["tokens_per_char"] < 0.60, ko
    assert ko["merged"]["tokens"] < 0.94 * ko["base"]["tokens"], ko
    assert "no defects" in printed and not report["defects"], report["defects"]
    assert report["vocab"] == {"base_tokens": BASE_IDS, "added_tokens": 4000, "added_special": 0, "total": BASE_IDS + 4000,
                               "base_size": BASE_IDS, "added": 4000, "size": BASE_IDS + 4000, "unit": "ids"}
    assert report["merge"]["first_added_id"] == BASE_IDS and report["reachable"]["unreachable"] == 0
    assert {name: row["share"] for name, row in report["identity"].items()} == {
        str(EN_HELDOUT): 1.0, "python-stdlib": 1.0, "edge strings": 1.0}
    base, new = AutoTokenizer.from_pretrained(llama3), AutoTokenizer.from_pretrained(tok_dir)
    assert len(new) == BASE_IDS + 4000
    new_vocab = new.get_vocab()
    assert all(new_vocab[t] == i for t, i in base.get_vocab().items())  # the 256 specials included
    assert all(is_korean_token(t) for t, i in new_vocab.items() if i >= BASE_IDS)
    assert {t: new.convert_tokens_to_ids(t) for t in meta.special_tokens} == meta.special_tokens
    assert (new.bos_token_id, new.eos_token_id) == (128000, 128001) and new.all_special_tokens == base.all_special_tokens
    strings = [s for s in CODE + PROBES if not has_hangul(s)]
    assert [new.encode(s) for s in strings] == [meta.encode(s, bos=True, eos=False) for s in strings]
    mixed = "<|begin_of_text|>GPU 메모리는 80GB이고 batch_size=32 입니다. 그러나 9월 11일의 잔혹 행위에 연루된 자들을 🚀<|eot_id|>"
    ids = new.encode(mixed, add_special_tokens=False)
    assert ids[0] == 128000 and ids[-1] == 128009 and new.decode(ids) == mixed
    assert len(ids) < len(base.encode(mixed, add_special_tokens=False)) and max(ids[1:-1]) >= BASE_IDS
    assert new.encode(" batch_size=32", add_special_tokens=False) == meta.encode(" batch_size=32", bos=False, eos=False)
    assert (tok_dir / "LLAMA3_NOTICE.txt").is_file()


def tiny_llama(path: Path, rows: int, tokenizer: Path) -> Path:
    """A random one-layer Llama with `rows` vocabulary rows and Llama-3's tokenizer beside it."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=rows, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False, rope_theta=500000.0,
                         bos_token_id=128000, eos_token_id=128001)
    LlamaForCausalLM(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(tokenizer).save_pretrained(path)
    return path


@pytest.mark.network
@pytest.mark.slow
def test_resize_keeps_rows_equal_to_ids_and_exports_gguf_as_llama_bpe(llama3, merged, tmp_path, capsys):
    """A tiny Llama with Llama-3's 128,256 rows (BPE tokens + specials): the new rows start at 128,256, and
    llama.cpp's converter still recognizes the pre-tokenizer as Llama-3's ("llama-bpe") and gives HF's ids."""
    from safetensors import safe_open
    from tokenizers import Tokenizer

    from serving.gguf_export import converter
    from serving.gguf_export import main as export_gguf
    from tests.support.llama_cpp import ensure_llama_cpp

    tok_dir, report, _ = merged
    tiny_llama(tmp_path / "tiny", BASE_IDS, llama3)
    tiny_llama(tmp_path / "short", 128000, llama3)
    capsys.readouterr()
    assert resize_cmd.main(["--model", str(tmp_path / "short"), "--tokenizer", str(tok_dir),
                            "--base-tokenizer", str(llama3), "--output", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "rows == ids" in err and "128,256 ids" in err, err
    assert resize_cmd.main(["--model", str(tmp_path / "tiny"), "--tokenizer", str(tok_dir),
                            "--base-tokenizer", str(llama3), "--output", str(tmp_path / "big")]) == 0
    with safe_open(str(tmp_path / "tiny" / "model.safetensors"), "pt") as f, \
            safe_open(str(tmp_path / "big" / "model.safetensors"), "pt") as g:
        old, new = f.get_tensor("model.embed_tokens.weight"), g.get_tensor("model.embed_tokens.weight")
    assert new.shape == (BASE_IDS + 4000, 64) and torch.equal(new[:BASE_IDS], old)
    ours = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    new_id = BASE_IDS  # the first Korean merge
    spelled = Tokenizer.from_file(str(llama3 / "tokenizer.json")).model.tokenize(ours.id_to_token(new_id))
    assert len(spelled) > 1 and all(t.id < 128000 for t in spelled)
    assert torch.allclose(new[new_id], old[[t.id for t in spelled]].mean(0))
    ensure_llama_cpp()
    out = tmp_path / "ko.gguf"
    assert export_gguf(["--model", str(tmp_path / "big"), "--output", str(out), "--outtype", "f32",
                        "--texts", str(KO_HELDOUT), "--texts", str(EN_HELDOUT)], prog="kocpt export gguf") == 0
    printed = capsys.readouterr().out
    assert "defects: none" in printed and "declared as" not in printed, printed
    assert re.search(r"token ids == \S+ on (\d+) of \1 encodings", printed), printed
    sys.path.insert(0, str(converter(None)[1]))
    try:
        from gguf import GGUFReader
    finally:
        sys.path.pop(0)
    fields = GGUFReader(str(out)).fields
    pre, types = fields["tokenizer.ggml.pre"], fields["tokenizer.ggml.token_type"]
    assert bytes(pre.parts[pre.data[0]]).decode() == "llama-bpe"
    control = [k for k, i in enumerate(types.data) if int(types.parts[i][0]) == 3]  # llama.cpp's CONTROL
    assert control == list(range(128000, BASE_IDS))
