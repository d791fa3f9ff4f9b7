"""Fixtures of the integration tier (the shared ones are in tests/conftest.py)."""

from __future__ import annotations

import os
import socket

import pytest
import torch


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(self, address, *args, **kwargs):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise AssertionError(f"network access attempted: {address}")
        return original(self, address, *args, **kwargs)

    original = socket.socket.connect
    monkeypatch.setattr(socket.socket, "connect", refuse)
    assert os.environ.get("HF_HUB_OFFLINE") == "1" and os.environ.get("HF_DATASETS_OFFLINE") == "1"


@pytest.fixture(scope="module")
def tiny(exported_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(exported_model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(exported_model_dir)
