"""The one exception the checkpoint commands raise for bad input (printed as one line):
every stage's, `stagekit.errors.BadInput`, re-exported here so `from checkpoints.errors import BadInput` works."""

from stagekit.errors import BadInput  # noqa: F401
