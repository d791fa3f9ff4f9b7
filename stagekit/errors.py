"""The one error a stage raises for input it cannot use (printed as one line, exit 2)."""


class BadInput(ValueError):
    """Input a stage cannot use; the message is one line naming what and why."""
