"""The hermetic unit tier: pure functions and in-process stages on tiny inputs (no subprocess, Beam worker,
network or wheel download; tests/conftest.py fails one that starts a process). `make test-fast`."""
