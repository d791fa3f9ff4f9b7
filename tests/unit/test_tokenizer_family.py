"""`family_of`: the one predicate that says which tokenizer family a path is, and the family object behind it.

Real inputs: Llama-2's tokenizer.model (SentencePiece) and a byte-level BPE tokenizer.json built here with
Hugging Face `tokenizers`, merged into by tokenizer/merge.py (seconds: a 300-token base).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil

import pytest

from stagekit.errors import BadInput
from stagekit.paths import KO_TRAIN, LLAMA2_TOKENIZER
from tests.support.models import byte_level_dir
from tokenizer.family import BYTE_LEVEL, SENTENCEPIECE, family_of
from tokenizer.token_encoder import TokenEncoder


def test_each_path_form_has_one_family(tmp_path):
    spm_dir = tmp_path / "spm"
    spm_dir.mkdir()
    shutil.copy(LLAMA2_TOKENIZER, spm_dir / "tokenizer.model")
    bpe = byte_level_dir(tmp_path / "bpe")
    assert family_of(LLAMA2_TOKENIZER).name == SENTENCEPIECE  # a model file
    assert family_of(spm_dir).name == SENTENCEPIECE
    assert family_of(bpe).name == BYTE_LEVEL and family_of(bpe / "tokenizer.json").name == BYTE_LEVEL
    # A SentencePiece directory with its derived tokenizer.json is still SentencePiece.
    shutil.copy(bpe / "tokenizer.json", spm_dir / "tokenizer.json")
    assert family_of(spm_dir).name == SENTENCEPIECE
    assert family_of(spm_dir).tokenizer_file(spm_dir) == spm_dir / "tokenizer.model"
    assert family_of(bpe).tokenizer_file(bpe) == bpe / "tokenizer.json"


@pytest.mark.parametrize(("make", "needle"), [
    (lambda root: root / "missing", "no such tokenizer"),
    (lambda root: root, "no tokenizer.model (SentencePiece) or tokenizer.json (byte-level BPE)"),
    (lambda root: byte_level_dir(root / "words", pre_tokenizer="Whitespace"), "not a byte-level BPE tokenizer.json"),
    (lambda root: byte_level_dir(root / "words", pre_tokenizer="Whitespace") / "tokenizer.json",
     "not a byte-level BPE tokenizer.json and not a SentencePiece model"),
])
def test_no_family_is_one_line(tmp_path, make, needle):
    with pytest.raises(BadInput, match=re.escape(needle)) as error:
        family_of(make(tmp_path))
    assert "\n" not in str(error.value)


def test_the_encoder_and_the_tokens_come_from_the_family(tmp_path):
    bpe = byte_level_dir(tmp_path / "bpe")
    spm = TokenEncoder.load(LLAMA2_TOKENIZER)
    assert type(spm).__name__ == "SentencePieceEncoder" and (spm.vocab_size, spm.bos_id, spm.eos_id) == (32000, 1, 2)
    assert family_of(LLAMA2_TOKENIZER).tokens(LLAMA2_TOKENIZER) == spm.pieces()
    byte_level = TokenEncoder.load(bpe)
    assert type(byte_level).__name__ == "ByteLevelEncoder" and byte_level.bos_id == -1
    assert byte_level.eos_id == byte_level.processor.token_to_id("<|endoftext|>")
    assert family_of(bpe).tokens(bpe) == byte_level.pieces()
    ids = byte_level.encode_batch(["Hello world"])[0]
    assert byte_level.processor.decode(ids) == "Hello world"


@pytest.mark.slow  # a real merge and its checks: ~10 s
def test_both_families_publish_their_merge_readable_by_others(tmp_path):
    """The byte-level merge used to publish its directory 0700 (mkdtemp's mode); both go through one staging path."""
    from tokenizer import merge as merge_cmd
    from tokenizer.bpe_merge import train_byte_level

    base = byte_level_dir(tmp_path / "base")
    korean = [line for line in (KO_TRAIN / "chatbot_qa.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
    (tmp_path / "ko.json").write_text(train_byte_level(korean[:300], base / "tokenizer.json", 600), encoding="utf-8")
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert merge_cmd.main(["--base", str(base), "--add", str(tmp_path / "ko.json"), "--output", str(tmp_path / "tok"),
                               "--eval-code-files", "0", "--no-plot"]) == 0
    assert "tokenizer check: no defects" in out.getvalue()
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "tok").stat().st_mode & 0o777 == 0o777 & ~umask
    assert family_of(tmp_path / "tok").name == BYTE_LEVEL
    report = json.loads((tmp_path / "tok" / "report.json").read_text(encoding="utf-8"))
    assert report["kind"] == BYTE_LEVEL and report["defects"] == []
