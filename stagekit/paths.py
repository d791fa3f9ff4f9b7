"""Where the repository's own data and the shared data beside it live (demo, tests, benchmarks).

`../shared/data` (see its README) holds the real Llama-2 tokenizer and the Korean/English texts;
it is never copied into the repository. Nothing here checks that the files exist: callers say
what is missing where they need it.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO_CORPUS = REPO / "tests" / "data" / "demo_corpus"
DEFAULT_CONFIG = REPO / "configs" / "demo.yaml"
SHARED_DATA = REPO.parent / "shared" / "data"
LLAMA2_TOKENIZER = SHARED_DATA / "llama2-tokenizer" / "tokenizer.model"
KO_TRAIN = SHARED_DATA / "ko-train"
KO_EVAL = SHARED_DATA / "ko-eval"
KO_HELDOUT = SHARED_DATA / "ko-heldout" / "korean-english-park.test.ko"
EN_HELDOUT = SHARED_DATA / "en" / "korean-english-park.test.en"
EN_SHAKESPEARE = SHARED_DATA / "en" / "tinyshakespeare.txt"
