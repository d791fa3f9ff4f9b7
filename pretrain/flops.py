"""Parameter and FLOP counts of a Llama shape (for MFU in the training log and for `kocpt plan`).

FLOPs per trained token follow the usual accounting (Kaplan et al.; Megatron-LM's MFU, PaLM
appendix B): 6 FLOPs per parameter touched by a token (2 forward + 4 backward), plus attention
scores and their weighted sum, 12 × layers × hidden × seq_length (causal masking not discounted,
as in Megatron's reports). Embedding lookups cost nothing; the LM head is a matmul and counts.
"""

from __future__ import annotations

from mcore_llama.shape import LlamaShape


def parameter_counts(shape: LlamaShape, vocab_rows: int | None = None) -> dict[str, int]:
    vocab = vocab_rows or shape.vocab_size
    h, f, layers = shape.hidden_size, shape.intermediate_size, shape.num_hidden_layers
    kv = shape.num_key_value_heads * shape.head_dim
    attention = h * h + 2 * h * kv + h * h  # q, k, v, o
    mlp = 3 * h * f  # gate, up, down
    norms = 2 * h
    per_layer = attention + mlp + norms
    embedding = vocab * h
    output = 0 if shape.tie_word_embeddings else vocab * h
    return {
        "embedding": embedding,
        "output": output,
        "per_layer": per_layer,
        "layers": per_layer * layers,
        "final_norm": h,
        "total": embedding + output + per_layer * layers + h,
    }


def flops_per_token(shape: LlamaShape, seq_length: int, vocab_rows: int | None = None) -> float:
    """Training FLOPs (forward + backward) per token, without activation recomputation."""
    counts = parameter_counts(shape, vocab_rows)
    matmul_params = counts["layers"] + (counts["output"] or counts["embedding"])
    attention = 12 * shape.num_hidden_layers * shape.hidden_size * seq_length
    return 6.0 * matmul_params + attention


# Dense bf16 peak TFLOP/s (no sparsity) by GPU, from the vendors' data sheets; longest names first
# so "H100 PCIe" is not read as "H100" (SXM). MFU is reported against these.
PEAK_BF16_TFLOPS = {
    "GH200": 989.0,
    "H200": 989.0,
    "H100 PCIe": 756.0,
    "H100 NVL": 835.0,
    "H100": 989.0,
    "H800": 989.0,
    "H20": 148.0,
    "B200": 2250.0,
    "A100": 312.0,
    "A800": 312.0,
    "L40S": 362.0,
    "A10G": 70.0,
}


def peak_bf16_tflops(device_name: str) -> float | None:
    """Peak dense bf16 TFLOP/s for a CUDA device name ("NVIDIA H100 80GB HBM3"), None if unknown."""
    for key in sorted(PEAK_BF16_TFLOPS, key=len, reverse=True):
        if key.lower() in device_name.lower():
            return PEAK_BF16_TFLOPS[key]
    return None


def gpu_model_name(device_name: str) -> str:
    """The table's name for a device ("NVIDIA H200" -> "H200"), or the device name itself."""
    for key in sorted(PEAK_BF16_TFLOPS, key=len, reverse=True):
        if key.lower() in device_name.lower():
            return key
    return device_name
