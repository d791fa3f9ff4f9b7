"""Where users run the model next: GGUF export with llama.cpp's own converter, checked with llama.cpp itself."""


class BadInput(ValueError):
    """Input a command cannot use; the message names the file and the problem (printed on one line)."""
