"""The instruction formats of the Korean SFT projects, and the pieces to start LoRA SFT from an export.

Formats (see SFT.md):
- `kullm`: KULLM (nlpai-lab), Alpaca's template in Korean: "### 명령어:" / "### 입력:" / "### 응답:".
- `koalpaca`: KoAlpaca (Beomi): "### 질문: ...\\n\\n### 답변: ...".
- `alpaca`: Stanford Alpaca's English "### Instruction:" / "### Input:" / "### Response:".

`encode_example` tokenizes prompt + response as one text (as generation will see it) and masks the
prompt's tokens out of the loss, the way alpaca-lora, KULLM and KoAlpaca train.
"""

from __future__ import annotations

from dataclasses import dataclass

IGNORE_INDEX = -100  # labels with this value do not count in transformers' causal-LM loss
# Llama attention and MLP projections: LoRA on all of them is the usual QLoRA/KULLM choice.
LLAMA_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class PromptFormat:
    name: str
    prompt: str  # with {instruction}
    prompt_with_input: str  # with {instruction} and {input}
    response_split: str  # where the answer starts in a generated text
    response_prefix: str = ""  # put between the prompt and the answer


FORMATS = {
    "kullm": PromptFormat(
        name="kullm",
        prompt="아래는 작업을 설명하는 명령어입니다. 요청을 적절히 완료하는 응답을 작성하세요.\n\n"
               "### 명령어:\n{instruction}\n\n### 응답:\n",
        prompt_with_input="아래는 작업을 설명하는 명령어와 추가 컨텍스트를 제공하는 입력이 짝을 이루는 예제입니다. "
                          "요청을 적절히 완료하는 응답을 작성하세요.\n\n"
                          "### 명령어:\n{instruction}\n\n### 입력:\n{input}\n\n### 응답:\n",
        response_split="### 응답:",
    ),
    "koalpaca": PromptFormat(
        name="koalpaca",
        prompt="### 질문: {instruction}\n\n### 답변:",
        prompt_with_input="### 질문: {instruction}\n\n{input}\n\n### 답변:",
        response_split="### 답변:",
        response_prefix=" ",
    ),
    "alpaca": PromptFormat(
        name="alpaca",
        prompt="Below is an instruction that describes a task. Write a response that appropriately completes "
               "the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n",
        prompt_with_input="Below is an instruction that describes a task, paired with an input that provides further "
                          "context. Write a response that appropriately completes the request.\n\n"
                          "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n",
        response_split="### Response:",
    ),
}


def get_format(name: str) -> PromptFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown prompt format {name!r} (known: {', '.join(FORMATS)})") from None


def build_prompt(instruction: str, input: str = "", fmt: str = "kullm") -> str:  # noqa: A002 (Alpaca's field name)
    spec = get_format(fmt)
    if input and input.strip():
        return spec.prompt_with_input.format(instruction=instruction, input=input)
    return spec.prompt.format(instruction=instruction)


def extract_response(generated: str, fmt: str = "kullm") -> str:
    """The answer part of a generated text (everything after the format's response marker)."""
    return generated.split(get_format(fmt).response_split, 1)[-1].strip()


def encode_example(tokenizer, example: dict, fmt: str = "kullm", max_length: int = 512) -> dict:
    """{"instruction", "input"?, "output"} -> input_ids / attention_mask / labels (prompt tokens masked)."""
    prompt = build_prompt(example["instruction"], example.get("input", ""), fmt)
    full = prompt + get_format(fmt).response_prefix + example["output"]
    prompt_ids = tokenizer(prompt)["input_ids"]  # with BOS, as at generation time
    ids = tokenizer(full)["input_ids"][: max_length - 1] + [tokenizer.eos_token_id]
    labels = [IGNORE_INDEX] * min(len(prompt_ids), len(ids)) + ids[len(prompt_ids):]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def collate(batch: list[dict], pad_id: int) -> dict:
    """Right-pad a list of `encode_example` outputs into tensors."""
    import torch

    width = max(len(item["input_ids"]) for item in batch)

    def pad(key, value):
        return torch.tensor([item[key] + [value] * (width - len(item[key])) for item in batch])

    return {"input_ids": pad("input_ids", pad_id), "attention_mask": pad("attention_mask", 0),
            "labels": pad("labels", IGNORE_INDEX)}


def lora_config(r: int = 8, alpha: int = 16, dropout: float = 0.05, targets=LLAMA_LORA_TARGETS,
                modules_to_save: list[str] | None = None):
    """peft LoraConfig for a Llama export; modules_to_save=["embed_tokens", "lm_head"] also trains those fully."""
    from peft import LoraConfig, TaskType

    return LoraConfig(task_type=TaskType.CAUSAL_LM, r=r, lora_alpha=alpha, lora_dropout=dropout,
                      target_modules=list(targets), modules_to_save=modules_to_save)
