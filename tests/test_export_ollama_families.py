"""Ollama TEMPLATEs for the real chat templates of every family we export (tests/fixtures/chat_templates).

Each family gets a small real tokenizer with its own special tokens and its real chat template;
the Modelfile TEMPLATE must render exactly what the chat template renders, and the stop
sequences must hold the family's end-of-turn tokens.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from jupyter_finetune.export import ExportError
from jupyter_finetune.export.ollama import stop_sequences
from jupyter_finetune.export.ollama_template import chat_layout, render_ollama
from test_export_ollama import MULTI_TURN, apply, go_render, needs_go

TEMPLATES = Path(__file__).parent / "fixtures" / "chat_templates"
LLAMA3 = ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
          "<|eom_id|>", "<|python_tag|>")
CHATML = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
GEMMA = ("<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>")
PHI = ("<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>")


@dataclass(frozen=True)
class Family:
    template: str
    """File name in tests/fixtures/chat_templates, without .jinja."""
    specials: tuple[str, ...]
    named: dict[str, str]
    """bos_token, eos_token, ... as the model's tokenizer_config.json names them."""
    config_ends: tuple[str, ...]
    """The tokens of the model's generation_config.json eos_token_id."""
    stops: tuple[str, ...]
    """The end-of-turn tokens the Modelfile must stop on."""
    system_place: str


FAMILIES = {
    "llama-3.1": Family("meta-llama-Llama-3.1-8B-Instruct", LLAMA3,
                        {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
                        ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"), ("<|eot_id|>", "<|eom_id|>"), "turn"),
    "llama-3.2": Family("meta-llama-Llama-3.2-3B-Instruct", LLAMA3,
                        {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
                        ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"), ("<|eot_id|>", "<|eom_id|>"), "turn"),
    "qwen2.5": Family("Qwen-Qwen2.5-7B-Instruct", CHATML, {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
                      ("<|im_end|>", "<|endoftext|>"), ("<|im_end|>",), "turn"),
    "qwen3": Family("Qwen-Qwen3-0.6B", CHATML, {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
                    ("<|im_end|>", "<|endoftext|>"), ("<|im_end|>",), "turn"),
    "gemma-2": Family("google-gemma-2-2b-it", GEMMA, {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>"},
                      ("<eos>", "<end_of_turn>"), ("<end_of_turn>",), "none"),
    "gemma-3": Family("google-gemma-3-it", GEMMA, {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>"},
                      ("<eos>", "<end_of_turn>"), ("<end_of_turn>",), "first_user"),
    "phi-3.5": Family("microsoft-Phi-3.5-mini-instruct", ("<s>",) + PHI,
                      {"bos_token": "<s>", "eos_token": "<|endoftext|>"},
                      ("<|end|>", "<|assistant|>", "<|endoftext|>"), ("<|end|>", "<|endoftext|>"), "turn"),
    "phi-4-mini": Family("microsoft-Phi-4-mini-instruct", PHI,
                         {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"},
                         ("<|endoftext|>", "<|end|>"), ("<|end|>", "<|endoftext|>"), "turn"),
    "mistral-nemo": Family("mistralai-Mistral-Nemo-Instruct-2407", ("<unk>", "<s>", "</s>", "[INST]", "[/INST]"),
                           {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}, ("</s>",), ("</s>",),
                           "last_user"),
}
CONVERSATIONS = {  # each family is checked on all of them its chat template accepts
    "system, multi-turn, ends with user": MULTI_TURN,
    "multi-turn, ends with user": MULTI_TURN[1:],
    "system, multi-turn, ends with assistant": MULTI_TURN[:-1],
    "multi-turn, ends with assistant": MULTI_TURN[1:-1],
    "system, one user": MULTI_TURN[:2],
    "one user": MULTI_TURN[1:2],
    "system, one exchange": MULTI_TURN[:3],
}
ALTERNATING_ONLY = (  # a template that could not be written: the system prompt after the conversation
    "{% for m in messages if m['role'] != 'system' %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"
    "{% if messages[0]['role'] == 'system' %}{{ 'Rules: ' + messages[0]['content'] }}{% endif %}")


def family_tokenizer(family: Family, template: str | None = None):
    """A real fast tokenizer (characters as words) with the family's special tokens and chat template."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {chr(c): i for i, c in enumerate(range(32, 127))}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token=None)),
                                        **family.named)
    tokenizer.add_special_tokens({"additional_special_tokens": [t for t in family.specials
                                                                if t not in family.named.values()]})
    tokenizer.chat_template = template or (TEMPLATES / f"{family.template}.jinja").read_text(encoding="utf-8")
    return tokenizer


def accepted(tokenizer, messages) -> bool:
    try:
        apply(tokenizer, messages)
    except Exception:  # Gemma 2 raises on a system message
        return False
    return True


@pytest.mark.parametrize("name", FAMILIES)
def test_modelfile_template_renders_exactly_the_real_chat_template(name):
    family = FAMILIES[name]
    tokenizer = family_tokenizer(family)
    layout = chat_layout(tokenizer)
    checked = [label for label, messages in CONVERSATIONS.items() if accepted(tokenizer, messages)]
    for label in checked:
        messages = CONVERSATIONS[label]
        assert render_ollama(layout.go_template(), messages) == apply(tokenizer, messages), label
    assert len(checked) == (3 if name == "gemma-2" else len(CONVERSATIONS))
    assert layout.system_place == family.system_place
    assert layout.trims == name.startswith(("llama", "gemma"))  # their templates apply Jinja's trim to contents


@pytest.mark.parametrize("name", FAMILIES)
def test_modelfile_stops_on_the_familys_end_of_turn_tokens(name):
    family = FAMILIES[name]
    tokenizer = family_tokenizer(family)
    stops = stop_sequences(chat_layout(tokenizer), tokenizer, tokenizer.convert_tokens_to_ids(list(family.config_ends)))
    assert set(family.stops) <= set(stops), stops
    assert all(stop in tokenizer.all_special_tokens for stop in stops)


@pytest.mark.slow
@needs_go
def test_every_familys_template_renders_the_same_prompts_in_gos_real_text_template(tmp_path):
    cases, expected = [], []
    for family in FAMILIES.values():
        tokenizer = family_tokenizer(family)
        template = chat_layout(tokenizer).go_template()
        for messages in CONVERSATIONS.values():
            if accepted(tokenizer, messages):
                cases.append((template, messages))
                expected.append(apply(tokenizer, messages))
    assert go_render(tmp_path, cases) == expected


def test_gemma3_writes_the_system_prompt_into_the_first_user_turn():
    tokenizer = family_tokenizer(FAMILIES["gemma-3"])
    prompt = render_ollama(chat_layout(tokenizer).go_template(), MULTI_TURN[:2])
    system, user = MULTI_TURN[0]["content"], MULTI_TURN[1]["content"]
    assert prompt == f"<bos><start_of_turn>user\n{system}\n\n{user}<end_of_turn>\n<start_of_turn>model\n"


def test_mistral_nemo_writes_the_system_prompt_into_the_final_user_message_only():
    tokenizer = family_tokenizer(FAMILIES["mistral-nemo"])
    template = chat_layout(tokenizer).go_template()
    system = MULTI_TURN[0]["content"]
    assert render_ollama(template, MULTI_TURN).endswith(f"[INST]{system}\n\n{MULTI_TURN[-1]['content']}[/INST]")
    assert system not in render_ollama(template, MULTI_TURN[:-1])


def test_qwen3_opens_only_a_final_assistant_message_with_an_empty_think_block():
    tokenizer = family_tokenizer(FAMILIES["qwen3"])
    prompt = render_ollama(chat_layout(tokenizer).go_template(), MULTI_TURN[1:-1])
    assert prompt.count("<think>\n\n</think>\n\n") == 1
    assert prompt.endswith(f"<|im_start|>assistant\n<think>\n\n</think>\n\n{MULTI_TURN[-2]['content']}<|im_end|>\n")


def test_llama31_template_writes_its_default_date_header():
    tokenizer = family_tokenizer(FAMILIES["llama-3.1"])
    prompt = render_ollama(chat_layout(tokenizer).go_template(), MULTI_TURN[1:2])
    assert prompt.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: "
                             "December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>")


def test_chat_template_that_writes_the_system_prompt_after_the_conversation_is_refused():
    tokenizer = family_tokenizer(FAMILIES["qwen2.5"], ALTERNATING_ONLY)
    with pytest.raises(ExportError, match=r"cannot be written as an Ollama TEMPLATE .*system prompt before the first "
                                          r"user message.*write the Modelfile's TEMPLATE by hand"):
        chat_layout(tokenizer)


@pytest.mark.slow
def test_ollama_export_of_a_llama31_run_stops_on_its_generation_configs_end_tokens(tmp_path, tiny_tokenizer):
    """The whole export: a Modelfile whose TEMPLATE renders Llama 3.1's prompts, stopping on <|eom_id|> too.

    <|eom_id|> (end of a tool-call message) appears in no prompt; only the model's generation config names it.
    """
    import copy

    from transformers import GenerationConfig

    from export_fixtures import tiny_run
    from jupyter_finetune.export import export_run
    from test_export_ollama import modelfile_template

    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.add_special_tokens({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
                                  "additional_special_tokens": [t for t in LLAMA3 if t not in ("<|begin_of_text|>",
                                                                                               "<|eot_id|>")]})
    tokenizer.chat_template = (TEMPLATES / "meta-llama-Llama-3.1-8B-Instruct.jinja").read_text(encoding="utf-8")
    run, _ = tiny_run(tmp_path, tokenizer, name="llama31-chat")
    config = GenerationConfig.from_pretrained(tmp_path / "llama31-chat-base")  # as Llama 3.1 ships it
    config.eos_token_id = tokenizer.convert_tokens_to_ids(["<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"])
    config.save_pretrained(tmp_path / "llama31-chat-base")
    result = export_run(run, "ollama", quant="q8_0")
    modelfile = (result.path / "Modelfile").read_text()
    assert re.findall(r"^PARAMETER stop (.*)$", modelfile, re.M) == [
        '"<|eot_id|>"', '"<|end_of_text|>"', '"<|eom_id|>"', '"<|start_header_id|>"', '"<|end_header_id|>"']
    for messages in (MULTI_TURN, MULTI_TURN[1:], MULTI_TURN[:3]):
        assert render_ollama(modelfile_template(result.path), messages) == apply(tokenizer, messages)
    assert any("strips spaces and newlines around each message" in note for note in result.notes)
