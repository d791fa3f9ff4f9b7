"""The `kocpt` console script: one thin subcommand per stage. No stage imports this package."""
