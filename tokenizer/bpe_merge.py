"""Korean merges for byte-level BPE bases (SmolLM2, Llama-3, Qwen2.5): a Hugging Face `tokenizer.json`.

Training (`--bpe-method fresh`; the default continues from the base's merges, tokenizer/bpe_continue.py):
a fresh BPE is learned with Hugging Face `tokenizers` under the base's own normalizer,
pre-tokenizer and 256-symbol byte alphabet, so its tokens are spelled the way the base spells text.

Merging (safe): the learned merges are taken in their order and kept when their result is absent from
the base, carries Hangul (a whole syllable or jamo, or the first two UTF-8 bytes of a syllable) and no
digit, and both halves already exist (base or kept). They are appended after every base merge, the new
tokens after every base id. BPE applies merges by rank, so a word is first merged exactly as the base
would, and an added merge can only fire on a pair whose text contains Hangul: text without Hangul keeps
its ids. Added tokens that BPE cannot produce from their own bytes are dropped (with what depends on them).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from tokenizer import BadInput

# Hangul syllables U+AC00..U+D7A3 start with these (lead byte, second byte) pairs in UTF-8.
_SYLLABLE_PREFIX = re.compile(rb"\xea[\xb0-\xbf]|[\xeb\xec][\x80-\xbf]|\xed[\x80-\x9e]")
HANGUL = re.compile("[\u1100-\u11ff\u3130-\u318f\ua960-\ua97f\uac00-\ud7a3\ud7b0-\ud7ff]")


def _bytes_of(token: str) -> bytes:
    """The bytes a byte-level token stands for."""
    return bytes(_CHAR_TO_BYTE[ch] for ch in token if ch in _CHAR_TO_BYTE)


def _byte_alphabet() -> list[str]:
    """GPT-2's byte -> printable character table, in byte order (the one every byte-level BPE uses)."""
    chars = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in chars:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


_CHAR_TO_BYTE = {ch: i for i, ch in enumerate(_byte_alphabet())}


def is_korean_token(token: str) -> bool:
    """Text containing this token's bytes contains Hangul."""
    raw = _bytes_of(token)
    return bool(_SYLLABLE_PREFIX.search(raw) or HANGUL.search(raw.decode("utf-8", "ignore")))


def has_digit(token: str) -> bool:
    return any(ch.isdigit() for ch in _bytes_of(token).decode("utf-8", "ignore"))


def train_byte_level(sentences: list[str], base_json: Path, vocab_size: int) -> str:
    """A BPE trained on `sentences` with the base's normalizer/pre-tokenizer/decoder; its tokenizer.json text."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    base = Tokenizer.from_file(str(base_json))
    learned = Tokenizer(models.BPE())
    learned.normalizer = base.normalizer
    learned.pre_tokenizer = base.pre_tokenizer
    learned.decoder = base.decoder
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=True, special_tokens=[],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    learned.train_from_iterator(sentences, trainer=trainer, length=len(sentences))
    return learned.to_str()


@dataclass
class BpeMergeStats:
    base_vocab: int = 0
    base_merges: int = 0
    learned_merges: int = 0
    added: int = 0
    skipped_already_present: int = 0
    skipped_not_script: int = 0
    skipped_digits: int = 0
    skipped_missing_part: int = 0
    skipped_max_added: int = 0
    unreachable_dropped: int = 0
    first_added_id: int = 0
    added_examples: list[str] = field(default_factory=list)


def _merge_pair(merge) -> tuple[str, str]:
    return tuple(merge.split(" ", 1)) if isinstance(merge, str) else tuple(merge)


def read_learned(path: str | Path) -> list[tuple[str, str]]:
    """The merges of a PREFIX.json written by `tokenizer/train.py --base BYTE_LEVEL_BASE`."""
    try:
        spec = json.loads(Path(path).read_text(encoding="utf-8"))
        merges = spec["model"]["merges"]
        if spec["model"]["type"] != "BPE":
            raise KeyError("type")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise BadInput(f"{path}: not a BPE tokenizer.json from tokenizer/train.py --base ({exc})") from None
    if "ByteLevel" not in json.dumps(spec.get("pre_tokenizer")):
        raise BadInput(f"{path}: --add has no ByteLevel pre-tokenizer; train it with tokenizer/train.py --base BASE")
    return [_merge_pair(m) for m in merges]


def merge_byte_level(base_spec: dict, learned: list[tuple[str, str]], max_added: int = 0) -> tuple[dict, BpeMergeStats]:
    """The base tokenizer.json (as a dict) with the safe Korean merges appended; see the module doc."""
    spec = json.loads(json.dumps(base_spec))
    model = spec["model"]
    vocab: dict[str, int] = model["vocab"]
    base_pairs = {_merge_pair(m) for m in model["merges"]}
    stats = BpeMergeStats(base_vocab=len(vocab), base_merges=len(model["merges"]),
                          learned_merges=sum(pair not in base_pairs for pair in learned))
    known = set(vocab)
    kept: list[tuple[str, str]] = []
    for left, right in learned:
        token = left + right
        if (left, right) in base_pairs:
            continue  # a continued PREFIX.json holds the base's own merges first
        if token in known:
            stats.skipped_already_present += 1
            continue
        if not is_korean_token(token):
            stats.skipped_not_script += 1
        elif has_digit(token):
            stats.skipped_digits += 1
        elif left not in known or right not in known:
            stats.skipped_missing_part += 1
        elif max_added and len(kept) >= max_added:
            stats.skipped_max_added += 1
        else:
            kept.append((left, right))
            known.add(token)
    kept = _reachable(spec, kept, stats)
    stats.first_added_id = append_merges(spec, kept)
    stats.added = len(kept)
    stats.added_examples = [_bytes_of(a + b).decode("utf-8", "replace") for a, b in kept[:: max(1, len(kept) // 12)]][:12]
    return spec, stats


def append_merges(spec: dict, pairs: list[tuple[str, str]]) -> int:
    """Append `pairs` to the tokenizer.json `spec` (in place): their tokens after every base id, their merges
    after every base merge. Returns the first new id.

    `tokenizers` does not keep an added token's serialized id: on load, one missing from the model's vocabulary
    gets the next id after it. Llama-3's 256 specials (ids 128000..128255, after its 128,000 BPE tokens) would
    so move onto the Korean ids; they are first written into the model's vocabulary at their own ids (as
    SmolLM2's already are), which the base's tokenization does not notice (they are matched before the model)."""
    model = spec["model"]
    vocab: dict[str, int] = model["vocab"]
    if pairs:
        for special in spec.get("added_tokens") or []:
            if vocab.setdefault(special["content"], special["id"]) != special["id"]:
                raise BadInput(f"added token {special['content']!r} has id {special['id']} but the model gives it "
                               f"{vocab[special['content']]}")
    next_id = 1 + max([*vocab.values(), *(t["id"] for t in spec.get("added_tokens") or [])], default=-1)
    if pairs and sorted(vocab.values()) != list(range(next_id)):
        raise BadInput(f"the base's ids are not 0..{next_id - 1} without gaps, so added ids would not stay where they are put")
    as_lists = bool(model["merges"]) and not isinstance(model["merges"][0], str)
    for k, (left, right) in enumerate(pairs):
        vocab[left + right] = next_id + k
        model["merges"].append([left, right] if as_lists else f"{left} {right}")
    return next_id


def merges_only(spec: dict):
    """The BPE model of `spec` without `ignore_merges` (Llama-3 sets it: a word that is a token is taken whole),
    so that `tokenize(token)` says whether the merges themselves build the token from its bytes."""
    from tokenizers import Tokenizer

    model = dict(spec["model"], ignore_merges=False)
    return Tokenizer.from_str(json.dumps(dict(spec, model=model))).model


def _reachable(spec: dict, kept: list[tuple[str, str]], stats: BpeMergeStats) -> list[tuple[str, str]]:
    """Drop added tokens BPE does not produce from their own bytes, and the merges built on them, to a fixpoint."""
    while True:
        trial = json.loads(json.dumps(spec))
        append_merges(trial, kept)
        model = merges_only(trial)
        dead = {a + b for a, b in kept if [t.value for t in model.tokenize(a + b)] != [a + b]}
        if not dead:
            return kept
        before = len(kept)
        alive: set[str] = set()
        survivors = []
        for a, b in kept:
            token = a + b
            parts_ok = all(p in spec["model"]["vocab"] or p in alive for p in (a, b))
            if token not in dead and parts_ok:
                survivors.append((a, b))
                alive.add(token)
        stats.unreachable_dropped += before - len(survivors)
        kept = survivors
