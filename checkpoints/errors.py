"""The one exception the checkpoint commands raise for bad input (printed as one line)."""


class BadInput(ValueError):
    """Input that cannot be used: the message names the file and the problem."""
