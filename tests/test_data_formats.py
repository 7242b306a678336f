"""Every input format and every source kind normalises to the same conversations."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from datasets import Dataset

from jupyter_finetune.data import prepare, read_path, read_records, read_rows, read_text
from jupyter_finetune.errors import FinetuneError
from jupyter_finetune.data.formats import detect_format
from helpers import chat, good_rows, jsonl

N = 30


def _prepare(rows, tokenizer, **kw):
    kw.setdefault("split", 0.1)
    return prepare(rows, name="d", tokenizer=tokenizer, model="tiny", **kw)


def _first_chat(ds):
    ex = min(ds.train + ds.test, key=lambda e: e.row)
    return ex.messages


FORMATS = {
    "messages": lambda i: chat(i, system=None),
    "prompt_completion": lambda i: {"prompt": chat(i, None)["messages"][0]["content"],
                                    "completion": chat(i, None)["messages"][1]["content"]},
    "alpaca": lambda i: {"instruction": chat(i, None)["messages"][0]["content"], "input": "",
                         "output": chat(i, None)["messages"][1]["content"]},
    "sharegpt": lambda i: {"conversations": [{"from": "human", "value": chat(i, None)["messages"][0]["content"]},
                                             {"from": "gpt", "value": chat(i, None)["messages"][1]["content"]}]},
}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_each_chat_format_is_detected_and_normalised_to_the_same_messages(fmt, tiny_tokenizer):
    rows = [FORMATS[fmt](i) for i in range(N)]
    raw = read_text(jsonl(rows))
    assert detect_format(raw) == fmt
    ds = _prepare(raw, tiny_tokenizer)
    assert ds.format == fmt
    assert _first_chat(ds) == chat(0, system=None)["messages"]
    assert len(ds.train) + len(ds.test) == N


def test_alpaca_input_is_appended_to_instruction_and_system_kept(tiny_tokenizer):
    rows = [{"instruction": f"Classify ticket {i}", "input": f"printer {i} broken", "output": "it",
             "system": "Be terse."} for i in range(N)]
    ds = _prepare(read_text(jsonl(rows)), tiny_tokenizer, split=0.0)
    assert ds.train[0].messages == [{"role": "system", "content": "Be terse."},
                                    {"role": "user", "content": "Classify ticket 0\n\nprinter 0 broken"},
                                    {"role": "assistant", "content": "it"}]


def test_conversational_prompt_completion_keeps_all_turns(tiny_tokenizer):
    rows = [{"prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": f"q{i}"}],
             "completion": [{"role": "assistant", "content": f"a{i}"}]} for i in range(N)]
    ds = _prepare(read_text(jsonl(rows)), tiny_tokenizer, split=0.0)
    assert [m["role"] for m in ds.train[0].messages] == ["system", "user", "assistant"]


def test_text_format_trains_on_the_whole_text(tiny_tokenizer):
    rows = [{"text": f"The printer on floor {i} jams when printing invoices."} for i in range(N)]
    ds = _prepare(read_text(jsonl(rows)), tiny_tokenizer, split=0.0)
    assert ds.format == "text"
    tokens = ds.preview(0)
    assert all(t.carries_loss for t in tokens)
    assert tokens[-1].text == tiny_tokenizer.eos_token


def test_sharegpt_system_turn_and_roles_are_mapped(tiny_tokenizer):
    rows = [{"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": f"q{i}"},
                               {"from": "gpt", "value": f"a{i}"}]} for i in range(N)]
    ds = _prepare(read_text(jsonl(rows)), tiny_tokenizer, split=0.0)
    assert [m["role"] for m in ds.train[0].messages] == ["system", "user", "assistant"]


def test_openai_text_parts_are_joined(tiny_tokenizer):
    rows = good_rows(N)
    rows[0]["messages"][1]["content"] = [{"type": "text", "text": "part one, "}, {"type": "text", "text": "part two"}]
    ds = _prepare(read_text(jsonl(rows)), tiny_tokenizer, split=0.0)
    assert ds.train[0].messages[1]["content"] == "part one, part two"


def test_json_array_file_csv_parquet_dataframe_and_dataset_read_alike(tmp_path, tiny_tokenizer):
    rows = [{"prompt": f"q{i} printer", "completion": f"a{i}"} for i in range(N)]
    df = pd.DataFrame(rows)
    (tmp_path / "d.json").write_text(json.dumps(rows))
    (tmp_path / "d.jsonl").write_text(jsonl(rows))
    df.to_csv(tmp_path / "d.csv", index=False)
    df.to_parquet(tmp_path / "d.parquet")
    sources = {
        "json": read_path(tmp_path / "d.json"), "jsonl": read_path(tmp_path / "d.jsonl"),
        "csv": read_path(tmp_path / "d.csv"), "parquet": read_path(tmp_path / "d.parquet"),
        "dataframe": read_records(df), "dataset": read_records(Dataset.from_list(rows)), "list": read_records(rows),
    }
    versions = {kind: _prepare(raw, tiny_tokenizer).version for kind, raw in sources.items()}
    assert len(set(versions.values())) == 1, versions


def test_parquet_nested_messages_read_back_as_lists(tmp_path, tiny_tokenizer):
    pd.DataFrame(good_rows(N)).to_parquet(tmp_path / "chat.parquet")
    ds = _prepare(read_path(tmp_path / "chat.parquet"), tiny_tokenizer, split=0.0)
    assert ds.train[0].messages == chat(0)["messages"]


def test_utf8_with_a_bom_reads_like_utf8_in_every_text_format_and_in_a_cell(tmp_path, tiny_tokenizer):
    """Notepad and Excel's "CSV UTF-8" start files with a byte order mark; so may a body pasted from one."""
    rows = [{"prompt": f"q{i} printer", "completion": f"a{i} café"} for i in range(N)]
    bom = b"\xef\xbb\xbf"
    (tmp_path / "d.jsonl").write_bytes(bom + jsonl(rows).encode())
    (tmp_path / "d.json").write_bytes(bom + json.dumps(rows).encode())
    (tmp_path / "d.csv").write_bytes(bom + pd.DataFrame(rows).to_csv(index=False).encode())
    sources = {suffix: read_path(tmp_path / f"d{suffix}") for suffix in (".jsonl", ".json", ".csv")}
    sources["cell"] = read_rows("\ufeff" + jsonl(rows))
    sources["one-line cell"] = read_rows("\ufeff" + json.dumps(rows))
    versions = {kind: _prepare(raw, tiny_tokenizer).version for kind, raw in sources.items()}
    assert set(versions.values()) == {_prepare(read_records(rows), tiny_tokenizer).version}, versions


@pytest.mark.parametrize(("name", "data", "message"), [
    ("utf16.jsonl", jsonl(good_rows(3)).encode("utf-16"), "looks like UTF-16, not UTF-8 — save it as UTF-8"),
    ("utf16.csv", "prompt,completion\nq,a\n".encode("utf-16-le"), "looks like UTF-16, not UTF-8 — save it as UTF-8"),
    ("renamed.jsonl", b"PAR1\x15\x04\x15\x00\x00\x00", "binary data, not text — it looks like a Parquet file: "
                                                        r"rename it to \.parquet"),
    ("blob.json", b"\x00\x01\x02\xff" * 8, r"binary data, not text — is this a \.parquet file renamed\?"),
    ("latin1.csv", "prompt,completion\nq,café\n".encode("latin-1"), r"not UTF-8 \(byte 0xe9 on line 2\) — save it "
                                                                    "as UTF-8"),
])
def test_a_file_that_is_not_utf8_text_is_refused_naming_it_and_what_it_holds(tmp_path, name, data, message):
    (tmp_path / name).write_bytes(data)
    with pytest.raises(FinetuneError, match=rf"^{tmp_path / name}: {message}"):
        read_path(tmp_path / name)


def test_jsonl_rows_are_numbered_by_line_counting_blank_lines():
    raw = read_text('{"text": "a"}\n\n\n{"text": "b"}\n')
    assert [r.row for r in raw] == [1, 4]


def test_the_ticket_sample_ships_in_the_package_and_an_unknown_sample_lists_the_known():
    import jupyter_finetune as ft

    path = ft.example_data("tickets")
    assert path.parent.name == "samples" and len(path.read_text().splitlines()) == 240
    with pytest.raises(FileNotFoundError,
                       match="no sample data set 'emails': the package ships ticket_preferences, tickets"):
        ft.example_data("emails")
