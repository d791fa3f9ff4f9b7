"""Bits per character: a hand computation, tokenizer independence, the sliding window, real text."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from evaluation import BadInput
from evaluation.bpc import bootstrap_se, paired_difference, read_documents, score_texts, sliding_windows
from stagekit.paths import EN_HELDOUT, KO_HELDOUT
from tests.support.models import context_free_llama, fast_tokenizer

# A vocabulary with the merged token 가나 and the probabilities a context-free model gives each token:
# p(가) p(나) = 1/2 * 1/4 = 1/8 = p(가나), so both tokenizations of 가나다 have probability 1/128.
VOCAB = {"<unk>": 0, "<s>": 1, "</s>": 2, "가": 3, "나": 4, "가나": 5, "다": 6}
PROBS = [1 / 64, 1 / 64, 1 / 32, 1 / 2, 1 / 4, 1 / 8, 1 / 16]


@pytest.fixture(scope="module")
def unigram_model():
    assert math.isclose(sum(PROBS), 1.0)
    return context_free_llama([math.log(p) for p in PROBS])


@pytest.fixture(scope="module")
def char_tokenizer():
    return fast_tokenizer(VOCAB, merges=[])


@pytest.fixture(scope="module")
def merged_tokenizer():
    return fast_tokenizer(VOCAB, merges=[("가", "나")])


def test_the_context_free_model_gives_the_set_probabilities(unigram_model):
    logits = unigram_model(torch.tensor([[1, 3, 5, 6, 4]])).logits
    probs = torch.softmax(logits, -1)
    assert torch.allclose(probs, torch.tensor(PROBS).expand_as(probs), rtol=1e-5)


def test_matches_a_hand_computation(unigram_model, char_tokenizer):
    # 가나다 char by char after BOS: -log2(1/2) - log2(1/4) - log2(1/16) = 1 + 2 + 4 = 7 bits;
    # 다가: 4 + 1 = 5 bits. 5 characters, 15 UTF-8 bytes (Hangul syllables are 3 bytes each).
    result = score_texts(unigram_model, char_tokenizer, ["가나다", "다가"], progress=False)
    assert (result.documents, result.characters, result.bytes, result.tokens) == (2, 5, 15, 5)
    assert result.bits == pytest.approx(12.0, rel=1e-5)
    assert result.bits_per_char == pytest.approx(12 / 5, rel=1e-5)
    assert result.bits_per_byte == pytest.approx(12 / 15, rel=1e-5)
    assert result.tokens_per_char == pytest.approx(1.0)


def test_two_tokenizations_with_equal_probability_give_the_same_figure(unigram_model, char_tokenizer, merged_tokenizer):
    texts = ["가나다", "다가나가나", "나다가"]
    assert merged_tokenizer("가나다", add_special_tokens=False)["input_ids"] == [5, 6]
    assert char_tokenizer("가나다", add_special_tokens=False)["input_ids"] == [3, 4, 6]
    chars = score_texts(unigram_model, char_tokenizer, texts, progress=False)
    merged = score_texts(unigram_model, merged_tokenizer, texts, progress=False)
    assert merged.tokens < chars.tokens  # fewer, harder tokens...
    assert merged.nll_per_token > chars.nll_per_token
    assert merged.bits_per_char == pytest.approx(chars.bits_per_char, rel=1e-6)  # ...same bits per character
    assert merged.bits_per_byte == pytest.approx(chars.bits_per_byte, rel=1e-6)
    # the exact figure: 가나다 7 bits, 다가나가나 4+3+3 = 10 bits, 나다가 2+4+1 = 7 bits; 11 characters
    assert chars.bits_per_char == pytest.approx(24 / 11, rel=1e-5)


def test_the_first_token_is_scored_after_bos_or_eos(unigram_model):
    # Without a BOS token the document starts after EOS (as lm-eval does); the figure is unchanged here
    # because the model ignores context, but the first token is still scored.
    no_bos = fast_tokenizer(VOCAB, merges=[])
    no_bos.bos_token = None
    result = score_texts(unigram_model, no_bos, ["가"], progress=False)
    assert result.tokens == 1 and result.bits == pytest.approx(1.0, rel=1e-5)


def test_sliding_windows_score_every_token_once_with_enough_context():
    for length in (1, 2, 5, 9, 10, 11, 33):
        for context, stride in ((4, 1), (4, 3), (8, 4), (10, 9)):
            windows = sliding_windows(length, context, stride)
            scored = [t for w in windows for t in range(w.first, w.end)]
            assert scored == list(range(1, length)), (length, context, stride)
            for w in windows:
                assert 0 <= w.start < w.first <= w.end and w.end - w.start <= context
                if w.start > 0:
                    assert w.first - w.start >= context - stride  # left context of the first scored token
    with pytest.raises(BadInput):
        sliding_windows(10, 4, 4)


def _reference_bits(model, tokenizer, texts):
    """Whole documents in one forward pass each, no batching and no windows."""
    total = 0.0
    for text in texts:
        ids = torch.tensor([[tokenizer.bos_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"]]])
        log_probs = torch.log_softmax(model(ids).logits[0, :-1].double(), -1)
        total -= log_probs.gather(-1, ids[0, 1:, None]).sum().item()
    return total / math.log(2)


@pytest.fixture(scope="module")
def tiny_llama2(exported_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(exported_model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(exported_model_dir)


@pytest.mark.slow
def test_batched_scoring_equals_one_pass_per_document(tiny_llama2):
    model, tokenizer = tiny_llama2
    texts = read_documents(KO_HELDOUT, 6) + read_documents(EN_HELDOUT, 6)
    result = score_texts(model, tokenizer, texts, context=256, max_batch_tokens=400, progress=False)
    with torch.no_grad():
        assert result.bits == pytest.approx(_reference_bits(model, tokenizer, texts), rel=1e-5)


def test_sliding_window_is_exact_for_a_model_that_sees_one_token(exported_model_dir):
    """With attention outputs zeroed the model is a bigram model: any window gives the same total."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(exported_model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
    tokenizer = AutoTokenizer.from_pretrained(exported_model_dir)
    texts = read_documents(KO_HELDOUT, 3)
    assert max(len(tokenizer(t)["input_ids"]) for t in texts) > 40  # longer than the small windows below
    full = score_texts(model, tokenizer, texts, context=256, progress=False)
    for context, stride in ((8, 4), (16, 15), (4, 1)):
        windowed = score_texts(model, tokenizer, texts, context=context, stride=stride, progress=False)
        assert windowed.tokens == full.tokens
        assert windowed.bits == pytest.approx(full.bits, rel=1e-5), (context, stride)


def test_sliding_window_on_a_real_model_needs_context(tiny_llama2):
    """A model that uses context: short windows change the figure, but every token is still scored once."""
    model, tokenizer = tiny_llama2
    texts = read_documents(KO_HELDOUT, 6)
    full = score_texts(model, tokenizer, texts, context=256, progress=False)
    short = score_texts(model, tokenizer, texts, context=8, stride=4, progress=False)
    assert short.tokens == full.tokens
    assert short.bits != pytest.approx(full.bits, rel=1e-7)


def test_real_tokenizer_on_korean_and_english(tiny_llama2):
    """Llama-2's tokenizer spends ~2 tokens per Hangul syllable (byte fallback), ~0.25 per English character;
    a random model is near-uniform over 32,000 tokens, so bits per token is about log2(32000) = 15."""
    model, tokenizer = tiny_llama2
    korean = score_texts(model, tokenizer, read_documents(KO_HELDOUT, 20), progress=False)
    english = score_texts(model, tokenizer, read_documents(EN_HELDOUT, 20), progress=False)
    assert korean.tokens == sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in read_documents(KO_HELDOUT, 20))
    assert 1.0 < korean.tokens_per_char < 3.0
    assert 0.15 < english.tokens_per_char < 0.4
    for result in (korean, english):
        assert abs(result.nll_per_token / math.log(2) - math.log2(32000)) < 0.5
        assert result.bits_per_char == pytest.approx(result.bits / result.characters)
    assert korean.bits_per_char > english.bits_per_char  # more tokens per character, each as hard


def test_bad_inputs(tmp_path, unigram_model, char_tokenizer):
    with pytest.raises(BadInput, match="not found"):
        read_documents(tmp_path / "missing.txt")
    (tmp_path / "bad.jsonl").write_text('{"text": "가"}\nnot json\n', encoding="utf-8")
    with pytest.raises(BadInput, match=r"bad.jsonl:2"):
        read_documents(tmp_path / "bad.jsonl")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(BadInput, match="not UTF-8"):
        read_documents(tmp_path / "latin1.txt")
    big = fast_tokenizer({**VOCAB, "라": 7}, merges=[])
    with pytest.raises(BadInput, match="only 7 output rows"):
        score_texts(unigram_model, big, ["라"], progress=False)
    with pytest.raises(BadInput, match="no non-empty"):
        score_texts(unigram_model, char_tokenizer, ["", ""], progress=False)


def test_each_document_keeps_its_own_bits(unigram_model, char_tokenizer):
    result = score_texts(unigram_model, char_tokenizer, ["가나다", "", "다가"], progress=False)  # the empty one is skipped
    assert [n / math.log(2) for n in result.doc_nll_nats] == pytest.approx([7.0, 5.0], rel=1e-5)
    assert result.doc_characters == [3, 2] and sum(result.doc_nll_nats) == pytest.approx(result.nll_nats)
    assert result.windowed_documents == 0
    assert score_texts(unigram_model, char_tokenizer, ["가나다가나다", "다가"], context=4, stride=2,
                       progress=False).windowed_documents == 1  # 7 ids with the prefix: two windows


def delta_method_se(bits, characters) -> float:
    """The textbook standard error of a ratio of sums (first-order): what the bootstrap should approach."""
    bits, characters = np.asarray(bits), np.asarray(characters)
    ratio, n = bits.sum() / characters.sum(), len(bits)
    return float(np.sqrt(((bits - ratio * characters) ** 2).sum() * n / (n - 1)) / characters.sum())


def test_the_bootstrap_error_matches_the_delta_method_and_shrinks_with_documents():
    rng = np.random.default_rng(7)
    characters = rng.integers(40, 400, size=1600)
    bits = characters * rng.normal(2.0, 0.3, size=1600)
    nll = bits * math.log(2)
    for n in (400, 1600):
        assert bootstrap_se(nll[:n], characters[:n]) == pytest.approx(delta_method_se(bits[:n], characters[:n]), rel=0.08)
    assert bootstrap_se(nll[:400], characters[:400]) / bootstrap_se(nll, characters) == pytest.approx(2.0, rel=0.15)
    assert bootstrap_se(nll[:400], characters[:400]) == bootstrap_se(nll[:400], characters[:400])  # seeded
    assert bootstrap_se(characters * 2.0 * math.log(2), characters) == pytest.approx(0.0, abs=1e-12)  # no spread
    assert bootstrap_se([1.0], [3]) is None


def test_a_paired_difference_is_tighter_than_either_error(unigram_model, char_tokenizer):
    rng = np.random.default_rng(3)
    characters = rng.integers(40, 400, size=300)
    base = characters * rng.normal(2.0, 0.4, size=300)  # documents differ a lot in difficulty...
    better = base - characters * rng.normal(0.1, 0.02, size=300)  # ...the second model gains a little on each
    a = {"doc_nll_nats": base * math.log(2), "doc_characters": characters}
    b = {"doc_nll_nats": better * math.log(2), "doc_characters": characters}
    gap, se = paired_difference(a, b)
    assert gap == pytest.approx((base.sum() - better.sum()) / characters.sum())
    assert 0 < se < 0.2 * math.hypot(bootstrap_se(a["doc_nll_nats"], characters), bootstrap_se(b["doc_nll_nats"], characters))
    assert gap / se > 10
    same = score_texts(unigram_model, char_tokenizer, ["가나다", "다가", "나다"], progress=False)
    assert paired_difference(same, same) == (0.0, 0.0)
    other = score_texts(unigram_model, char_tokenizer, ["가나다", "다가"], progress=False)
    with pytest.raises(BadInput, match="same documents"):
        paired_difference(same, other)
    assert same.to_dict()["bits_per_char_se"] == pytest.approx(same.bits_per_char_se) and same.bits_per_char_se > 0
