"""Continued pretraining with Megatron-Core: model construction, data, the loop, checkpoints."""
