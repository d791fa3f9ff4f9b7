"""The end-to-end tier: stages chained as a user chains them (the demo, real SmolLM2 weights, the Qwen2
family, GGUF, the comparison, the ablation). Every test here is `slow` (tests/conftest.py marks them)."""
