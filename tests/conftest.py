"""Real, tiny components built in the tests: a byte-level BPE tokenizer and a random Llama."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub id resolved by mistake fails at once, never downloads

sys.path.insert(0, str(Path(__file__).parent))

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [  # a few hundred words of varied text, so ordinary English, numbers and JSON take few tokens
    "The printer on floor three is broken and the invoice did not print.",
    "Please reset my password; I cannot log in to the billing account since Monday.",
    '{"team": "it", "priority": "high", "case": 1234}',
    '{"name": "Ada", "age": 36, "tags": ["math", "code"], "active": true, "manager": null, "score": 9.5}',
    '[{"id": 1, "ok": false}, {"id": 2, "ok": true}]',
    "Ticket 42: shipping was late and the box arrived damaged. Refund, please!",
    "You sort support tickets. Answer with JSON only: team, priority and case number.",
    "system user assistant human gpt bot thanks hello hi ok yes no 0 1 2 3 4 5 6 7 8 9 10 100 2024 3.14",
    "What is the capital of France? The capital of France is Paris, a city on the river Seine.",
    "Summarize the following text in one sentence. Translate it into French, then into German.",
    "Once upon a time, a small robot lived in a quiet village by the sea. Every morning it walked to "
    "the harbour, counted the boats, and wrote the number in a little blue notebook.",
    "Q: How many days are in a week? A: There are seven days in a week.",
    "Dear team, the meeting is moved to Tuesday at 10:30 am. Bring your laptop and the latest report.",
    "Error: file not found (code 404). Check the path, then try again; if it still fails, call support.",
    "The weather today is sunny with a high of 25 degrees and a light wind from the west.",
    "Add two cups of flour, one egg, a pinch of salt and half a cup of milk; mix well and bake for 20 minutes.",
    "def add(a, b):\n    return a + b  # returns the sum of two numbers",
    "Customers asked about delivery times, returns, discounts, and their order status by email or phone.",
    "Her answer was short: \"No, thank you.\" His reply was longer - and, frankly, rather confusing...",
    "Write a polite email declining the offer. Keep it under 100 words and do not mention the price.",
    "Water boils at 100 degrees Celsius at sea level; ice melts at 0 degrees.",
    "The model was trained for 3 epochs with a learning rate of 0.0002 and a batch size of 8.",
    "Which team should handle this: sales, billing, it, or shipping? Reply with the team name.",
    "Good morning! Could you help me find a cheap flight from London to New York next Friday?",
    "Apples, oranges & bananas cost $1.50, $2.00 and $0.75 each (tax included) = $4.25 total.",
    "The quick brown fox jumps over the lazy dog while the cat sleeps under the warm kitchen table.",
]


def pytest_addoption(parser):
    parser.addoption("--platform", metavar="NAME",
                     help="the tests/envs/NAME.txt platform whose venv runs this session (.ci/platform.sh)")


def pytest_collection_modifyitems(config, items):
    """Tests marked `platform` check a venv that .ci/platform.sh built; elsewhere they are skipped."""
    if config.getoption("--platform"):
        return
    skip = pytest.mark.skip(reason="runs in a platform's venv: .ci/platform.sh NAME VERSION")
    for item in items:
        if "platform" in item.keywords:
            item.add_marker(skip)


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(CORPUS * 20, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>", bos_token="<|im_start|>",
                                        unk_token="<|endoftext|>", model_max_length=512)
    tokenizer.chat_template = CHATML
    return tokenizer


def save_tiny_model(folder: Path, tokenizer) -> Path:
    """A random 2-layer Llama, its config and ``tokenizer`` saved in ``folder`` (bench/ builds one too)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=len(tokenizer), max_position_embeddings=512,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A real fast tokenizer (byte-level BPE, so any text tokenizes) with a ChatML template."""
    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A folder with a random 2-layer Llama, its config and the tiny tokenizer."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"), tiny_tokenizer)


@pytest.fixture()
def workdir(tmp_path) -> Path:
    """The notebook's working folder, where ./ft_runs is; a module overrides it to open
    the shell next to a run store it built."""
    return tmp_path


@pytest.fixture()
def shell(workdir, monkeypatch):
    """A real IPython shell with the extension loaded, run in ``workdir`` with the run store at its
    default (the variable that moves it unset), as in a fresh notebook."""
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.chdir(workdir)
    monkeypatch.delenv("JUPYTER_FINETUNE_RUNS", raising=False)
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "jupyter_finetune")
    yield ip
    InteractiveShell.clear_instance()


@pytest.fixture()
def shell_tickets(shell, tiny_model_dir) -> None:
    """``%%ft_data tickets`` run in the shell: 60 chat rows on the tiny model, ready for ``%ft_train tickets``."""
    from IPython.utils.capture import capture_output

    from helpers import good_rows, jsonl

    with capture_output():
        shell.run_cell_magic("ft_data", f"tickets --model {tiny_model_dir}", jsonl(good_rows(60)))
