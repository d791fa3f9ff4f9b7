"""Handoff to SFT: the exported directory loads cleanly, generates, and takes a LoRA adapter that trains."""

from __future__ import annotations

import logging
import warnings

import pytest
import torch

from evaluation.sft import FORMATS, IGNORE_INDEX, build_prompt, collate, encode_example, extract_response, lora_config

EXAMPLES = [
    {"instruction": "대한민국의 수도는 어디인가요?", "output": "대한민국의 수도는 서울입니다."},
    {"instruction": "다음 문장을 영어로 번역하세요.", "input": "오늘 날씨가 좋다.", "output": "The weather is nice today."},
    {"instruction": "김치의 주재료를 알려 주세요.", "output": "배추, 고춧가루, 마늘, 젓갈입니다."},
    {"instruction": "인사말을 하나 써 주세요.", "output": "안녕하세요, 만나서 반갑습니다!"},
]


def load_export(path, caplog):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    caplog.clear()
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    messages = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    return model, tokenizer, messages


def test_export_loads_without_warnings_and_generates(exported_model_dir, caplog):
    model, tokenizer, messages = load_export(exported_model_dir, caplog)
    assert not [m for m in messages if any(w in m.lower() for w in ("vocab", "size", "mismatch", "resize", "newly"))], messages
    assert model.config.vocab_size == len(tokenizer) == model.get_input_embeddings().weight.shape[0] == 32000
    assert type(model).__name__ == "LlamaForCausalLM"
    prompt = build_prompt("한국의 전통 음식을 소개해 주세요.", fmt="kullm")
    inputs = tokenizer(prompt, return_tensors="pt")
    assert inputs["input_ids"][0, 0].item() == tokenizer.bos_token_id
    assert tokenizer.decode(inputs["input_ids"][0], skip_special_tokens=True) == prompt  # Korean round-trips
    output = model.generate(**inputs, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    assert output.shape[1] == inputs["input_ids"].shape[1] + 8
    text = tokenizer.decode(output[0], skip_special_tokens=True)
    assert text.startswith(prompt) and isinstance(extract_response(text), str)


def test_prompt_formats():
    kullm = build_prompt("요약하세요.", "긴 글", fmt="kullm")
    assert "### 명령어:\n요약하세요.\n\n### 입력:\n긴 글\n\n### 응답:\n" in kullm
    assert build_prompt("질문?", fmt="koalpaca") == "### 질문: 질문?\n\n### 답변:"
    assert build_prompt("Say hi.", fmt="alpaca").endswith("### Instruction:\nSay hi.\n\n### Response:\n")
    assert extract_response("### 질문: 뭐?\n\n### 답변: 이것.", "koalpaca") == "이것."
    with pytest.raises(ValueError, match="unknown prompt format"):
        build_prompt("x", fmt="chatml")


def test_labels_cover_only_the_response(llama2_tokenizer_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(llama2_tokenizer_dir)
    for fmt in FORMATS:
        item = encode_example(tokenizer, EXAMPLES[0], fmt)
        answer = [t for t, label in zip(item["input_ids"], item["labels"]) if label != IGNORE_INDEX]
        assert item["input_ids"][0] == tokenizer.bos_token_id and answer[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(answer, skip_special_tokens=True).strip() == EXAMPLES[0]["output"], fmt


@pytest.mark.slow
def test_lora_adapter_attaches_and_trains(exported_model_dir, tmp_path, caplog):
    from peft import PeftModel, get_peft_model

    model, tokenizer, _ = load_export(exported_model_dir, caplog)
    torch.manual_seed(0)
    peft_model = get_peft_model(model, lora_config(r=8, alpha=16, dropout=0.0))
    trainable = {n: p for n, p in peft_model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    before = {n: p.detach().clone() for n, p in peft_model.named_parameters()}
    # KoAlpaca's short template keeps the batch small (KULLM's Korean preamble is ~130 Llama-2 tokens);
    # all three formats are checked in test_labels_cover_only_the_response.
    batch = collate([encode_example(tokenizer, ex, "koalpaca") for ex in EXAMPLES], tokenizer.eos_token_id)
    optimizer = torch.optim.AdamW(trainable.values(), lr=1e-2)
    peft_model.train()
    losses = []
    for _ in range(6):
        loss = peft_model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0] - 0.2, losses
    changed = [n for n, p in peft_model.named_parameters() if not torch.equal(p, before[n])]
    assert changed and all("lora_" in n for n in changed)  # only the adapter moved; the export is untouched
    assert any("lora_B" in n for n in changed)

    peft_model.eval()
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    assert (adapter / "adapter_model.safetensors").is_file() and (adapter / "adapter_config.json").is_file()
    with torch.no_grad():
        expected = peft_model(input_ids=batch["input_ids"]).logits
        fresh, _, _ = load_export(exported_model_dir, caplog)
        reloaded = PeftModel.from_pretrained(fresh, adapter).eval()
        assert torch.allclose(reloaded(input_ids=batch["input_ids"]).logits, expected, atol=1e-5)
        merged = reloaded.merge_and_unload()  # what a user ships after SFT: a plain LlamaForCausalLM again
        assert type(merged).__name__ == "LlamaForCausalLM"
        assert torch.allclose(merged(input_ids=batch["input_ids"]).logits, expected, atol=1e-4)
