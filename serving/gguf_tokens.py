"""Print a GGUF file's vocabulary (`tokenizer.ggml.tokens`) as one JSON list, read by the `gguf` package on
this process's path: `kocpt export gguf` runs it with llama.cpp's own gguf-py first on PYTHONPATH, the
reader of the converter that wrote the file (its package imports itself as `gguf`, so it cannot be
loaded under another name, and an installed `gguf` of another version may be present).

    PYTHONPATH=LLAMA_CPP/gguf-py python -m serving.gguf_tokens FILE.gguf
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    from gguf import GGUFReader

    field = GGUFReader(sys.argv[1]).fields["tokenizer.ggml.tokens"]
    json.dump([bytes(field.parts[i]).decode("utf-8") for i in field.data], sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
