"""The tokenizer as training sets it up: what evaluation, chat and export must render prompts with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
"""The template used for a model that has none: the data report counts with it and training renders with it."""


def training_tokenizer(model_path: Path, adapter_dir: Path | None = None) -> Any:
    """A fresh tokenizer (callers change its padding) as training uses it: the model's chat template
    or else ChatML, and the end token as padding when there is no pad token.

    With ``adapter_dir``, the tokenizer saved there by training is preferred: it is the one training used.
    """
    from transformers import AutoTokenizer

    saved = adapter_dir is not None and (adapter_dir / "tokenizer_config.json").is_file()
    tokenizer = AutoTokenizer.from_pretrained(adapter_dir if saved else model_path)
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHATML_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
