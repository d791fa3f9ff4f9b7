"""What every stage command shares: the config loader (`stagekit.config`) and the one bad-input
error (`stagekit.errors.BadInput`) that `kocpt` prints as a single line."""
