"""The integration tier: one stage at a time as users run it (Beam jobs, Megatron processes, llama.cpp,
SLURM), on tiny models and real data. Every test here is `slow` (tests/conftest.py marks them)."""
