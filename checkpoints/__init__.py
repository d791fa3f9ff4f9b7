"""Llama checkpoints: vocabulary resize and Hugging Face ⇄ Megatron-Core conversion.

Commands (each also `python -m checkpoints.NAME --help`):
  kocpt checkpoints resize  --model HF_DIR --tokenizer TOK_DIR --output HF_DIR [--init fvt|mean|random]
  kocpt checkpoints convert --to megatron --input HF_DIR --output MEGATRON_DIR
  kocpt checkpoints convert --to hf --input MEGATRON_DIR --output HF_DIR --tokenizer TOK_DIR

Megatron checkpoint directory contract (what `convert --to megatron` writes, what
`convert --to hf` and the training stage read):
  MEGATRON_DIR/
    metadata.json, common.pt, __*.distcp   `dist_checkpointing.save(model.sharded_state_dict())`
                                            (torch_dist) of `pretrain.model.build_gpt_model(shape)`;
                                            keys are the GPTModel's own (local layer spec names),
                                            so it loads at any TP/PP layout.
    kocpt_model.json                        `checkpoints.metadata.ModelMetadata`:
      {"format": "kocpt-megatron-model/1",
       "shape": LlamaShape.to_dict()        (vocab_size = the REAL vocabulary, unpadded),
       "padded_vocab_size": int             (rows stored for embedding/output_layer; ≥ vocab_size),
       "dtype": "bfloat16" | "float32" | "float16",
       "hf_config": {...}                   (the source config.json, to write it back),
       "generation_config": {...} | null}
  Padding rows (ids ≥ shape.vocab_size) are zero in the embedding and the output layer; loading
  at a layout with more padding fills the extra rows with zeros (Megatron marks these two tensors
  `allow_shape_mismatch`). Padded ids can never be generated or enter the loss once
  `checkpoints.vocab_padding.mask_padded_vocab(model, shape.vocab_size)` is applied (a forward
  hook that sets their logits to the dtype's minimum); `convert --to hf` drops the rows.

Public API for the training and evaluation stages:
  checkpoints.metadata.read_model_metadata(ckpt_dir) -> ModelMetadata   (.shape, .dtype, ...)
  checkpoints.metadata.write_model_metadata(ckpt_dir, metadata)         (copy it into training
                                                                         checkpoints so that
                                                                         `convert --to hf` works)
  checkpoints.convert.load_megatron_checkpoint_into(model, ckpt_dir)    this rank's GPTModel stage
                                                                         (any TP/PP) from a dist
                                                                         checkpoint (converted or
                                                                         trained; extra optimizer
                                                                         keys are ignored)
  checkpoints.convert.load_hf_into_megatron(model, hf_dir, shape)       each rank reads only its
                                                                         own slices (safe_open)
  checkpoints.convert.hf_to_megatron(hf_dir, out_dir) / megatron_to_hf(ckpt_dir, out_dir, tok_dir)
  checkpoints.vocab_padding.mask_padded_vocab(model, vocab_size)        call once after building
  checkpoints.mapping.parameter_table(shape)                            the one HF ⇄ Megatron table
"""
