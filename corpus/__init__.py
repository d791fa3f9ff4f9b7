"""Pure functions on documents: normalization, PII scrubbing, quality filters, MinHash, record I/O.

Nothing here imports Beam: every function takes and returns plain values and is tested directly.
"""
