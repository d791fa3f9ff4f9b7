"""Korean vocabulary for a base tokenizer of either family: training, the merge, the Hugging Face files, the
report and the check.

`tokenizer.family.family_of(path)` decides the family (SentencePiece `tokenizer.model`, or a byte-level
BPE `tokenizer.json`) and returns its object; the SentencePiece family works on SentencePiece's
`ModelProto` directly (the merged `tokenizer.model` is the single source of truth and `tokenizer.json`
is derived from it), the byte-level family on the Hugging Face `tokenizer.json`.
"""


from stagekit.errors import BadInput  # noqa: F401  (the one bad-input error of every stage)
