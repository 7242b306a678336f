"""Exporting a run: the adapter with its card, merged weights, where exports go and how they are recorded."""

from __future__ import annotations

import json
import os
import re
import stat

import pytest
import torch

from export_fixtures import SYSTEM, finished_run, logits, max_diff, ticket, tiny_model, tiny_run
from helpers import python_with_mounts
from jupyter_finetune.models.tokenizer import CHATML_TEMPLATE
from jupyter_finetune.export import ExportError, ExportExists, export_named, export_run
from jupyter_finetune.export import run_export
from jupyter_finetune.runs import DamagedRun, EvalSummary, SystemResult
from store_builders import DAMAGES, damage


@pytest.fixture(scope="module")
def llama_run(tmp_path_factory, tiny_tokenizer):
    return tiny_run(tmp_path_factory.mktemp("export"), tiny_tokenizer)


def sample_texts(tokenizer) -> list[str]:
    return [tokenizer.apply_chat_template(ticket(7), tokenize=False),
            "Ticket 42: shipping was late and the box arrived damaged. Refund, please!"]


def test_adapter_export_is_the_peft_adapter_with_a_model_card(llama_run, tiny_tokenizer):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run, reference = llama_run
    result = export_run(run, "adapter", overwrite=True)
    assert result.path == run.path / "export" / "adapter" and result.quant is None
    names = {f.path for f in result.files}
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "tokenizer.json"} <= names
    assert "training_args.bin" not in names
    base = AutoModelForCausalLM.from_pretrained(run.settings().model, dtype=torch.float32)
    loaded = PeftModel.from_pretrained(base, result.path).eval()
    texts = sample_texts(tiny_tokenizer)
    assert max_diff(logits(loaded, tiny_tokenizer, texts), logits(reference, tiny_tokenizer, texts)) < 1e-6


def test_model_card_names_base_data_hash_settings_and_losses(llama_run):
    run, _ = llama_run
    card = (export_run(run, "adapter", overwrite=True).path / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: peft\n")
    assert f"`{run.settings().model}`" in card
    assert "`0123456789ab`" in card and "2 train / 1 test" in card
    assert "| rank | 8 |" in card and "| alpha | 16 |" in card and "| lr | 0.0002 |" in card
    assert "| last training loss | 1.2500 |" in card and "| best held-out loss | 1.3750 |" in card
    assert f"Not evaluated yet (`%ft_eval {run.name}`" in card


def test_model_card_shows_eval_results_when_the_run_was_evaluated(tmp_path, tiny_tokenizer):
    run, _ = tiny_run(tmp_path, tiny_tokenizer, name="evaluated")
    run.save_evaluation(EvalSummary("0123456789ab", ("json_valid", "exact"), {
        "base": SystemResult({"json_valid": 0.25, "exact": 0.0}, 40.0, 0.5, 20.0),
        "fine-tuned": SystemResult({"json_valid": 1.0, "exact": 0.875}, 40.0, 0.5, 20.0)}, "fine-tuned beats base"), {})
    card = (export_run(run, "adapter").path / "README.md").read_text()
    assert "| system | json_valid | exact |" in card
    assert "| base | 0.250 | 0.000 |" in card and "| fine-tuned | 1.000 | 0.875 |" in card
    assert "Verdict: fine-tuned beats base" in card and "Not evaluated yet" not in card


def test_merged_model_logits_equal_base_plus_adapter_in_fp32(llama_run, tiny_tokenizer):
    from transformers import AutoModelForCausalLM

    run, reference = llama_run
    result = export_run(run, "merged", overwrite=True)
    merged = AutoModelForCausalLM.from_pretrained(result.path, dtype=torch.float32)
    texts = sample_texts(tiny_tokenizer)
    want = logits(reference, tiny_tokenizer, texts)
    assert max_diff(logits(merged, tiny_tokenizer, texts), want) < 1e-4
    with reference.disable_adapter():  # the adapter matters, so a merge that dropped it would fail above
        assert max_diff(logits(reference, tiny_tokenizer, texts), want) > 0.1
    assert not any(name.endswith(("lora_A.weight", "lora_B.weight")) for name in merged.state_dict())


def test_merged_folder_has_the_tokenizer_and_chat_template_training_used(llama_run):
    from transformers import AutoTokenizer

    run, _ = llama_run
    result = export_run(run, "merged", overwrite=True)
    tokenizer = AutoTokenizer.from_pretrained(result.path)
    assert tokenizer.chat_template == CHATML_TEMPLATE
    assert tokenizer.apply_chat_template(ticket(1)[:2], tokenize=False).startswith(f"<|im_start|>system\n{SYSTEM}")
    assert json.loads((result.path / "config.json").read_text())["dtype"] == "float32"
    assert (result.path / "README.md").read_text().startswith("---\nlibrary_name: transformers\n")


def test_quantized_run_is_merged_into_a_16_bit_copy_of_the_base_and_says_so(tmp_path, tiny_tokenizer):
    from safetensors import safe_open

    run, _ = tiny_run(tmp_path, tiny_tokenizer, name="qlora", quant="4bit")
    result = export_run(run, "merged")
    assert json.loads((result.path / "config.json").read_text())["dtype"] == "bfloat16"
    with safe_open(result.path / "model.safetensors", "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}
    (note,) = result.notes
    assert "4bit quantized base weights" in note and "bfloat16 copy of the unquantized base" in note
    assert note in (result.path / "README.md").read_text() and note in result.summary()


def test_run_on_a_base_saved_in_4bit_exports_its_adapter_and_refuses_merging_saying_why(tmp_path, tiny_tokenizer):
    run, _ = tiny_run(tmp_path, tiny_tokenizer, name="bnb", quant="4bit")
    config_file = tmp_path / "bnb-base" / "config.json"  # as unsloth's -bnb-4bit uploads are saved
    config = json.loads(config_file.read_text())
    config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    config_file.write_text(json.dumps(config))
    for target in ("merged", "gguf", "ollama"):
        with pytest.raises(ExportError, match=r"stored with 4bit weights only; merged, GGUF and Ollama exports need "
                                              r"its unquantized weights. Export --to adapter"):
            export_run(run, target)
    assert (export_run(run, "adapter").path / "adapter_config.json").is_file()


def test_existing_export_is_refused_without_overwrite(llama_run):
    run, _ = llama_run
    first = export_run(run, "adapter", overwrite=True)
    with pytest.raises(ExportExists, match=r"already exists: pass --overwrite"):
        export_run(run, "adapter")
    again = export_run(run, "adapter", overwrite=True)
    assert again.path == first.path
    assert [r["path"] for r in run.exports()].count(str(first.path)) == 1


def test_overwrite_never_deletes_a_folder_the_export_did_not_write(llama_run, tmp_path):
    run, _ = llama_run
    mine = tmp_path / "my-models"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    with pytest.raises(ExportExists, match="not written by %ft_export"):
        export_run(run, "adapter", out=mine, overwrite=True)
    with pytest.raises(ExportExists, match="not written by %ft_export"):
        export_run(run, "merged", out=mine / "thesis.tex", overwrite=True)
    assert (mine / "thesis.tex").read_text() == "precious"


def test_out_puts_the_export_elsewhere_and_the_run_records_it(llama_run, tmp_path):
    run, _ = llama_run
    result = export_run(run, "adapter", out=tmp_path / "shipped")
    assert result.path == (tmp_path / "shipped").resolve() and (result.path / "adapter_model.safetensors").is_file()
    record = next(r for r in run.exports() if r["path"] == str(result.path))
    assert record["kind"] == "adapter" and record["run"] == run.name and record["created"] > 0
    sizes = {f["path"]: f["bytes"] for f in record["files"]}
    assert sizes["adapter_model.safetensors"] == (result.path / "adapter_model.safetensors").stat().st_size
    assert record["bytes"] == sum(sizes.values())
    assert json.loads((result.path / "export.json").read_text())["kind"] == "adapter"


def test_export_from_a_run_store_that_cannot_record_it_succeeds_with_a_note_saying_why(tmp_path, tiny_tokenizer):
    run, _ = tiny_run(tmp_path / "store", tiny_tokenizer)
    (run.path / "export").write_text("a file where the run's export folder goes")  # as a read-only store refuses
    result = export_run(run, "adapter", out=tmp_path / "shipped")
    assert (tmp_path / "shipped" / "adapter_model.safetensors").is_file()
    assert result.notes == (f"the export is complete but could not be recorded in run {run.name!r}: "
                            f"{run.path / 'export'}: a file is in the way — move that file, or choose another path",)
    assert "could not be recorded" in repr(result)


def test_an_export_that_fills_the_disk_is_one_error_naming_the_folder_and_leaves_nothing(llama_run, tmp_path):
    """safetensors and numpy report a full disk in their own words, without an errno."""
    small = tmp_path / "small"
    small.mkdir()
    code = ("from pathlib import Path; from jupyter_finetune.errors import FinetuneError\n"
            "from jupyter_finetune.export import export_run; from jupyter_finetune.runs import Run\n"
            "for kind in ('merged', 'gguf'):\n"
            f"    try: export_run(Run(Path({str(llama_run[0].path)!r})), kind, out=Path({str(small)!r}) / kind)\n"
            "    except FinetuneError as e: print(e)\n"
            f"print(sorted(p.name for p in Path({str(small)!r}).rglob('*') if p.is_file()))")
    printed = python_with_mounts(f"mount -t tmpfs -o size=64k tmpfs {small}", code).splitlines()
    fix = "(no space left on the device) — free some space, or choose a folder on another disk (--out)"
    assert printed == [f"{small / 'merged'}: cannot write the export here {fix}",
                       f"{small / 'gguf' / (llama_run[0].name + '-f16.gguf')}: cannot write the export here {fix}",
                       "[]"]


@pytest.fixture()
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.parametrize("kind", ["adapter", "merged"])
def test_exports_are_readable_by_other_accounts_as_the_umask_allows(llama_run, tmp_path, umask_022, kind):
    """An ollama or llama.cpp service runs as another user: it must be able to enter the folder and read every
    file (safetensors writes its files 0o600)."""
    folder = export_run(llama_run[0], kind, out=tmp_path / "shared").path
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.rglob("*")}
    assert "README.md" in modes and modes == dict.fromkeys(modes, 0o644)


def test_failed_export_leaves_neither_a_target_nor_temporary_files(llama_run, monkeypatch):
    run, _ = llama_run

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(run_export, "write_gguf", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        export_run(run, "gguf", quant="q8_0", overwrite=True)
    folder = run.path / "export" / "gguf"
    assert not (folder / f"{run.name}-q8_0.gguf").exists()
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(("kind", "quant", "message"), [
    ("onnx", "f16", r"--to 'onnx': use one of adapter, merged, gguf, ollama"),
    ("gguf", "q4_k", r"--quant 'q4_k': use one of f16, q8_0"),
])
def test_unknown_kind_or_quant_is_refused_naming_the_choices(llama_run, kind, quant, message):
    with pytest.raises(ExportError, match=message):
        export_run(llama_run[0], kind, quant=quant)


def test_run_without_an_adapter_is_refused_naming_the_fix(tmp_path, tiny_tokenizer):
    model_dir = tiny_model(tmp_path / "base", tiny_tokenizer)
    run = finished_run(tmp_path / "ft_runs", "untrained", str(model_dir))
    run.set_status("failed", message="out of memory")
    with pytest.raises(FileNotFoundError, match=r"no adapter yet \(status failed\): finish it with %ft_train --resume"):
        export_run(run, "merged")


def test_a_run_still_training_is_refused(llama_run, monkeypatch):
    run, _ = llama_run
    monkeypatch.setattr(type(run), "status", lambda self: {"status": "running"})
    with pytest.raises(ExportError, match="still training"):
        export_run(run, "adapter", overwrite=True)


@pytest.mark.parametrize("case", ["string step", "metrics string loss", "data manifest"])
def test_a_damaged_run_is_refused_by_name_with_the_file_and_the_fix(tmp_path, tiny_tokenizer, case):
    file, change, reason = DAMAGES[case]
    run, _ = tiny_run(tmp_path, tiny_tokenizer, name="damaged")
    damage(run, file, change)
    with pytest.raises(DamagedRun, match=rf"run 'damaged' is damaged: {re.escape(reason)}.*Fix or delete "
                                         rf"{re.escape(str(run.path / file))}, or train it again.*--overwrite"):
        export_named("damaged", "adapter", runs_dir=run.path.parent)
    assert not (run.path / "export").exists()
