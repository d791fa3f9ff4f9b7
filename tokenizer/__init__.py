"""Korean SentencePiece training, the merge into Llama-2's tokenizer, the Hugging Face export and the report.

Everything works on SentencePiece's `ModelProto` directly (`sentencepiece_model_pb2`), so the merged
`tokenizer.model` is the single source of truth and `tokenizer.json` is derived from it.
"""


from stagekit.errors import BadInput  # noqa: F401  (the one bad-input error of every stage)
