"""The one way a stage's `main` is run from a command line: `kocpt SUBCOMMAND` (kocpt/cli.py) and every
`python -m MODULE` / `python FILE.py` form (`if __name__ == "__main__": sys.exit(run_main(main))`).

- `BadInput` that the stage's own main did not print: `PROG: error: MESSAGE`, one line, exit 2;
- Ctrl-C (KeyboardInterrupt): `PROG: interrupted`, one line, exit 130 (128 + SIGINT, what shells report),
  once the stage's own `finally`/`except BaseException` cleanup ran (staging folders are removed on the
  way out, as on any other failure);
- a closed stdout (`kocpt plan ... | head`): exit quietly.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from stagekit.errors import BadInput

INTERRUPTED = 130


def run_main(main: Callable[..., int | None], argv: list[str] | None = None, prog: str | None = None) -> int:
    """`main(argv, prog=prog)` (or `main(argv)` when prog is None) with the exits above."""
    name = prog or _prog_name()
    try:
        result = main(argv, prog=prog) if prog is not None else main(argv)
    except BadInput as exc:  # any stage's bad input that its own main did not print: one line
        print(f"{name}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:
        _quiet_stdout()
        return 1
    return int(result or 0)


def _prog_name() -> str:
    """What argparse would call this command: `python -m pipelines.corpus` -> corpus.py."""
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "kocpt"


def _quiet_stdout() -> None:
    """After EPIPE, Python would complain once more while flushing stdout at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
