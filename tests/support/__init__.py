"""Plain helpers the tests call (no fixtures: those live in each tier's conftest.py)."""
