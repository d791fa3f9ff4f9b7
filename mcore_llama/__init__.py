"""A Llama on Megatron-Core: the idea that the checkpoint converter and the training stage share.

- `shape`          what the model is: `LlamaShape`, from and to a Hugging Face config; vocabulary padding
- `build`          how it is built: Megatron's TransformerConfig, the layer spec, the GPTModel
- `mapping`        the one Hugging Face ⇄ Megatron parameter table, used both ways
- `vocab_padding`  padded vocabulary ids masked out of the logits
- `hf_checkpoint`  a Hugging Face directory read tensor by tensor (or slice by slice)
- `weights`        loading HF safetensors or a Megatron dist checkpoint into this rank's stage
- `run_dir`        the checkpoint-directory contract: `kocpt_model.json`, `latest`
- `runtime`        parallel state + seeds in one call, and the CPU shim (which lasts for the process)

`checkpoints/` and `pretrain/` import from here and never from each other. How the model is split
over ranks is Megatron-Core's own (its tensor-parallel layers and sharded state dicts).
"""
