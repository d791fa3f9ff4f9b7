"""The corpus functions as they were before the hot-path work (commit 377cd2f), kept verbatim as the
reference that `tests/integration/test_corpus_identity.py` holds the fast versions to, output for output."""
