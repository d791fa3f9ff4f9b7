"""Llama checkpoints: vocabulary resize and Hugging Face ⇄ Megatron-Core conversion.

Commands (each also `python -m checkpoints.NAME --help`):
  kocpt checkpoints resize  --model HF_DIR --tokenizer TOK_DIR --output HF_DIR [--init fvt|mean|random]
  kocpt checkpoints convert --to megatron --input HF_DIR --output MEGATRON_DIR
  kocpt checkpoints convert --to hf --input MEGATRON_DIR|RUN_DIR --output HF_DIR --tokenizer TOK_DIR
  python -m torch.distributed.run --nproc_per_node N -m checkpoints.verify --hf HF_DIR --megatron DIR

What a Llama on Megatron-Core is (shape, model building, the HF ⇄ Megatron table, vocabulary
padding, the checkpoint-directory contract, weight loading, the CPU runtime) lives in
`mcore_llama/`, which this package and `pretrain/` both build on; they never import each other.
"""
