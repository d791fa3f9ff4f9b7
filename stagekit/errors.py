"""The one exception for input a stage cannot use (a bad flag, config key, path or file).

Every stage raises it (re-exported as `tokenizer.BadInput`, `evaluation.BadInput`,
`pretrain.config.ConfigError`), so `kocpt` catches one type and
prints `PROG: error: MESSAGE` without a traceback.
"""


class BadInput(ValueError):
    """Input a stage cannot use; the message is one line naming what and why."""
