"""The jupyter_server extension: runs, one run, its metrics and the machine's resources, as JSON.

A real run store is built with the library's own writers (RunStore, TrainConfig, FtDataset's manifest,
the evaluation report) and served by a real jupyter_server started by pytest-jupyter.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from traitlets.config import Config

from jupyter_finetune import _jupyter_server_extension_points
from jupyter_finetune.runs import RunStore
from jupyter_finetune.server.resources import parse_smi
from jupyter_finetune.server.settings import store_root
from store_builders import DAMAGES, completed_and_training, damage, log, start, tickets

pytest_plugins = ["pytest_jupyter.jupyter_server"]

API = "jupyter-finetune/api"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path) -> RunStore:
    """tickets-v1 completed (4 steps, evaluated); tickets-v2 training at step 2 of 8; a run outside the store."""
    store = RunStore.at(tmp_path / "store")
    completed_and_training(store, [(1, 2.0, None), (2, 1.5, 1.6), (3, 1.2, None), (4, 1.1, 1.3)])
    start(RunStore.at(tmp_path), "x", "SECRET-MODEL", 1)
    return store


@pytest.fixture
def jp_server_config(store, monkeypatch):
    monkeypatch.delenv("JUPYTER_FINETUNE_RUNS", raising=False)
    return Config({"ServerApp": {"jpserver_extensions": {"jupyter_finetune": True}},
                   "JupyterFinetune": {"runs_dir": str(store.root)}})


async def get(jp_fetch, *path: str, **kwargs):
    response = await jp_fetch(API, *path, raise_error=False, **kwargs)
    return response.code, json.loads(response.body)


async def get_raw(http_server_client, jp_base_url, jp_auth_header, path: str):
    """A request for exactly this path, with no escaping on the way (jp_fetch escapes each part)."""
    response = await http_server_client.fetch(f"{jp_base_url}{API}/{path}", headers=jp_auth_header,
                                              raise_error=False)
    return response.code, response.body.decode()


async def test_runs_list_shows_status_model_progress_losses_and_updated_time(jp_fetch, store):
    code, body = await get(jp_fetch, "runs")
    assert code == 200
    rows = {row["name"]: row for row in body["runs"]}
    assert [row["name"] for row in body["runs"]] == ["tickets-v2", "tickets-v1"]
    v1, v2 = rows["tickets-v1"], rows["tickets-v2"]
    assert (v1["status"], v1["model"], v1["progress"], v1["last_train_loss"], v1["best_eval_loss"]) == \
        ("completed", "smollm2-135m", 1.0, 1.1, 1.3)
    assert (v2["status"], v2["model"], v2["progress"], v2["last_train_loss"], v2["best_eval_loss"]) == \
        ("running", "qwen2.5-0.5b", 0.25, 2.25, None)
    assert v1["updated"] == store.get("tickets-v1").status()["updated"]
    assert v1["eval_scores"] == {"json_fields": 1.0}


async def test_run_shows_its_config_data_summary_and_eval_summary(jp_fetch, store):
    code, body = await get(jp_fetch, "runs", "tickets-v1")
    assert code == 200
    assert body["name"] == "tickets-v1" and body["status"] == "completed"
    assert body["config"]["train"]["steps"] == 4 and body["config"]["preset"] == "quick"
    assert body["data_summary"]["version"] == tickets().version
    assert body["data_summary"]["rows"] == {"train": 4, "test": 1}
    [evaluation] = body["evals"]
    assert evaluation["data_version"] == tickets().version and evaluation["metrics"] == ["json_fields"]
    assert evaluation["systems"]["fine-tuned"]["scores"] == {"json_fields": 1.0}
    assert evaluation["systems"]["base"]["scores"] == {"json_fields": 0.0}
    assert "passes" in evaluation["verdict"]
    assert "outputs" not in evaluation and "per_row" not in evaluation


async def test_metrics_after_a_step_are_only_the_newer_records_with_the_status(jp_fetch, store):
    code, body = await get(jp_fetch, "runs", "tickets-v1", "metrics", params={"after": 2})
    assert code == 200
    assert [r["step"] for r in body["metrics"]] == [3, 4]
    assert (body["status"], body["active"], body["step"], body["max_steps"]) == ("completed", False, 4, 4)
    _, everything = await get(jp_fetch, "runs", "tickets-v1", "metrics")
    assert [r["step"] for r in everything["metrics"]] == [1, 2, 3, 4]


async def test_metrics_poll_of_a_training_run_gets_each_new_record_once(jp_fetch, store):
    _, first = await get(jp_fetch, "runs", "tickets-v2", "metrics", params={"after": -1})
    assert [r["step"] for r in first["metrics"]] == [1, 2] and first["status"] == "running" and first["active"]
    log(store.get("tickets-v2"), 3, 8, 2.0)
    _, second = await get(jp_fetch, "runs", "tickets-v2", "metrics", params={"after": first["metrics"][-1]["step"]})
    assert [(r["step"], r["loss"]) for r in second["metrics"]] == [(3, 2.0)] and second["step"] == 3


async def test_metrics_after_that_is_not_a_step_is_400(jp_fetch, store):
    code, body = await get(jp_fetch, "runs", "tickets-v1", "metrics", params={"after": "two"})
    assert code == 400 and "after='two'" in body["message"]


async def test_diverged_loss_is_sent_as_null_so_browsers_can_parse_it(jp_fetch, store):
    log(store.get("tickets-v2"), 3, 8, float("nan"))
    response = await jp_fetch(API, "runs", "tickets-v2", "metrics", params={"after": 2})
    body = json.loads(response.body, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    assert [r["loss"] for r in body["metrics"]] == [None]


async def test_resources_without_a_gpu_answer_cpu_and_memory(jp_fetch, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))
    code, body = await get(jp_fetch, "resources")
    assert code == 200
    assert body["gpus"] == []
    assert body["cpu"]["count"] >= 1 and 0 <= body["cpu"]["percent"] <= 100
    assert 0 < body["memory"]["used"] <= body["memory"]["total"]


async def test_resources_read_gpus_from_nvidia_smi_on_path(jp_fetch, tmp_path, monkeypatch):
    tools = tmp_path / "tools"
    tools.mkdir()
    smi = tools / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho '0, NVIDIA H100 80GB HBM3, 1024, 81559, 37'\n")
    smi.chmod(0o755)
    monkeypatch.setitem(sys.modules, "pynvml", None)
    monkeypatch.setenv("PATH", str(tools))
    code, body = await get(jp_fetch, "resources")
    assert code == 200
    assert body["gpus"] == [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_used": 1024 * 2 ** 20,
                             "memory_total": 81559 * 2 ** 20, "utilization": 37.0}]


def test_nvidia_smi_fields_it_cannot_read_are_null():
    out = "0, Tesla T4, 500, 15360, [N/A]\n1, NVIDIA A10G, [N/A], 23028, 5\n\n"
    assert [(g["index"], g["utilization"], g["memory_used"]) for g in parse_smi(out)] == \
        [(0, None, 500 * 2 ** 20), (1, 5.0, None)]


@pytest.mark.parametrize("path", ["runs/nope", "runs/nope/metrics"])
async def test_unknown_run_is_404_naming_the_known_runs(jp_fetch, store, path):
    code, body = await get(jp_fetch, *path.split("/"))
    assert code == 404 and "no run named 'nope'" in body["message"] and "tickets-v1" in body["message"]


@pytest.mark.parametrize("name", ["..%2Fx", "..%2Fx/metrics", "..", "%2E%2E", "x%2F..%2F..%2Fx", "100%25"])
async def test_names_with_separators_or_dots_are_400(http_server_client, jp_base_url, jp_auth_header, store, name):
    code, body = await get_raw(http_server_client, jp_base_url, jp_auth_header, f"runs/{name}")
    assert code == 400 and "run name" in json.loads(body)["message"]


async def test_a_run_name_with_a_trailing_newline_is_400(http_server_client, jp_base_url, jp_auth_header, store):
    code, body = await get_raw(http_server_client, jp_base_url, jp_auth_header, "runs/tickets-v1%0A")
    assert code == 400 and "run name" in json.loads(body)["message"]


async def test_absolute_path_as_a_name_is_400(http_server_client, jp_base_url, jp_auth_header, store):
    outside = quote(str(store.root.parent / "x"), safe="")
    code, body = await get_raw(http_server_client, jp_base_url, jp_auth_header, f"runs/{outside}")
    assert code == 400 and "SECRET-MODEL" not in body


@pytest.mark.parametrize("path", ["runs/../x", "runs/../x/metrics", "runs/./../x"])
async def test_dot_dot_in_the_url_path_reaches_no_run_outside(http_server_client, jp_base_url, jp_auth_header,
                                                              store, path):
    code, body = await get_raw(http_server_client, jp_base_url, jp_auth_header, path)
    assert code in (400, 404) and "SECRET-MODEL" not in body


async def test_symlinked_run_leading_outside_is_neither_listed_nor_served(jp_fetch, store):
    (store.root / "linked").symlink_to(store.root.parent / "x", target_is_directory=True)
    assert "linked" in [r.name for r in store]
    _, listing = await get(jp_fetch, "runs")
    assert "linked" not in [row["name"] for row in listing["runs"]]
    for path in (["runs", "linked"], ["runs", "linked", "metrics"]):
        code, body = await get(jp_fetch, *path)
        assert code == 404 and "SECRET-MODEL" not in json.dumps(body)


@pytest.mark.parametrize("path", ["runs", "runs/tickets-v1", "runs/tickets-v1/metrics", "resources"])
async def test_requests_without_a_token_are_403(jp_fetch, store, path):
    code, _ = await get(jp_fetch, *path.split("/"), headers={"Authorization": ""})
    assert code == 403
    code, _ = await get(jp_fetch, *path.split("/"))
    assert code == 200


def test_store_defaults_to_ft_runs_under_the_server_root_else_the_kernels_setting(tmp_path, monkeypatch):
    monkeypatch.delenv("JUPYTER_FINETUNE_RUNS", raising=False)
    assert store_root("", str(tmp_path)) == tmp_path.resolve() / "ft_runs"
    assert store_root("shared/runs", str(tmp_path)) == tmp_path.resolve() / "shared" / "runs"
    monkeypatch.setenv("JUPYTER_FINETUNE_RUNS", str(tmp_path / "drive"))
    assert store_root("", "/elsewhere") == tmp_path.resolve() / "drive"


def test_extension_is_declared_and_enabled_by_its_config_file():
    assert _jupyter_server_extension_points() == [{"module": "jupyter_finetune.server"}]
    config = json.loads((ROOT / "jupyter-config" / "jupyter_server_config.d" / "jupyter_finetune.json").read_text())
    assert config == {"ServerApp": {"jpserver_extensions": {"jupyter_finetune": True}}}


@pytest.mark.slow
def test_server_extension_imports_only_the_run_store():
    code = "import json, sys, jupyter_finetune.server; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                       check=True).stdout)
    # errors: the user-error classes below every layer, importing nothing
    assert {m.split(".")[1] for m in loaded if m.startswith("jupyter_finetune.")} == {"errors", "runs", "server"}
    assert not [m for m in loaded if m.split(".")[0] in ("torch", "transformers", "datasets")]


@pytest.mark.parametrize("case", DAMAGES)
async def test_a_damaged_run_is_served_as_damaged_with_its_reason_and_the_others_as_usual(jp_fetch, store, case):
    file, change, reason = DAMAGES[case]
    broken = start(store, "broken", "smollm2-135m", 4)
    log(broken, 1, 4, 2.0)
    damage(broken, file, change)
    code, body = await get(jp_fetch, "runs")
    assert code == 200
    rows = {row["name"]: row for row in body["runs"]}
    assert rows["broken"]["status"] == "damaged" and rows["broken"]["damage"].startswith(reason)
    assert (rows["tickets-v1"]["status"], rows["tickets-v1"]["last_train_loss"], rows["tickets-v1"]["damage"]) == \
        ("completed", 1.1, None)
    for path in (["runs", "broken"], ["runs", "broken", "metrics"]):
        code, body = await get(jp_fetch, *path)
        assert code == 200 and body["status"] == "damaged" and body["damage"].startswith(reason)


async def test_a_run_file_linking_outside_the_run_is_not_served(jp_fetch, store):
    """``x`` lies outside the store; its config.json names SECRET-MODEL."""
    config = store.get("tickets-v1").path / "config.json"
    config.unlink()
    config.symlink_to(store.root.parent / "x" / "config.json")
    for path in (["runs"], ["runs", "tickets-v1"], ["runs", "tickets-v1", "metrics"]):
        code, body = await get(jp_fetch, *path)
        assert code == 200 and "SECRET-MODEL" not in json.dumps(body)
    _, detail = await get(jp_fetch, "runs", "tickets-v1")
    assert detail["status"] == "damaged" and detail["damage"] == "config.json: links outside the run"


def write_metrics(run, steps: range, max_steps: int) -> None:
    """What a long training run logged: a train record a step, an eval record every 100 steps."""
    with open(run.path / "metrics.jsonl", "a") as f:
        f.writelines(f'{{"step": {s}, "max_steps": {max_steps}, "loss": {1 + 1 / s}, "eval_loss": null, "lr": 2e-4}}\n'
                     + (f'{{"step": {s}, "eval_loss": {2 + 1 / s}}}\n' if s % 100 == 0 else "") for s in steps)
    run.set_status("running", step=steps[-1], max_steps=max_steps)


def bytes_read() -> int:
    """Bytes this process (the test and the server in it, every thread) has read so far."""
    return int(dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())["rchar"])


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="counts bytes read with Linux's /proc/self/io")
async def test_a_poll_reads_as_much_for_a_long_run_as_for_a_short_one(jp_fetch, store):
    """The sidebar's poll (the runs, then the new records of a training run), with no new line and with one,
    reads about the same bytes for a 1,000-line run and a 100,000-line one."""
    lengths = {"short": 1_000, "long": 100_000}
    for name, length in lengths.items():
        write_metrics(start(store, name, "smollm2-135m", 2 * length), range(1, length + 1), 2 * length)

    async def poll(name: str, after: int) -> int:
        before = bytes_read()
        assert (await get(jp_fetch, "runs"))[0] == 200
        code, page = await get(jp_fetch, "runs", name, "metrics", params={"after": after})
        assert code == 200 and page["metrics"][-1]["step"] == after + 1
        return bytes_read() - before

    for name, length in lengths.items():
        await poll(name, length - 1)  # the server's first read of the run: all of it, once
    cost = {}
    for name, length in lengths.items():
        idle = await poll(name, length - 1)
        write_metrics(store.get(name), range(length + 1, length + 2), 2 * length)
        cost[name] = (idle, await poll(name, length))
    (short_idle, short_grown), (long_idle, long_grown) = cost["short"], cost["long"]
    assert long_idle < 1.2 * short_idle + 2048 and long_grown < 1.2 * short_grown + 2048, cost


async def test_a_poller_far_behind_on_a_long_run_gets_the_older_part_thinned(jp_fetch, store):
    run = start(store, "long", "smollm2-135m", 10_000)
    write_metrics(run, range(1, 5001), 10_000)
    _, page = await get(jp_fetch, "runs", "long", "metrics", params={"after": -1})
    steps = [r["step"] for r in page["metrics"]]
    assert page["thinned"] is True and 1000 < len(steps) < 2200 and steps == sorted(steps)
    assert steps[0] == 1 and steps[-1] == 5000 and {r["attempt"] for r in page["metrics"]} == {1}
    full = [r["step"] for r in page["metrics"] if "lr" in r]  # every train record of the last ~1000 records
    assert full == list(range(full[0], 5001)) and len(full) > 900
    assert all(r["loss"] == 1 + 1 / r["step"] for r in page["metrics"] if r.get("loss") is not None)
    evals = [r for r in page["metrics"] if r.get("eval_loss") is not None]
    assert [r["step"] for r in evals] == list(range(100, 5001, 100))  # 50 eval points: none thinned away
    _, latest = await get(jp_fetch, "runs", "long", "metrics", params={"after": 4999})
    assert [(r["step"], r.get("loss")) for r in latest["metrics"]] == [(5000, 1 + 1 / 5000), (5000, None)]
    assert latest["thinned"] is False


async def test_a_poller_hears_of_a_newer_attempt_that_replaced_records_it_holds(jp_fetch, store):
    """tickets-v2 logged steps 1-4, was killed and resumed from its checkpoint at step 2 (attempt 2)."""
    run = store.get("tickets-v2")
    log(run, 3, 8, 2.0)
    log(run, 4, 8, 1.75)
    _, held = await get(jp_fetch, "runs", "tickets-v2", "metrics", params={"after": -1})
    assert [(r["step"], r["attempt"]) for r in held["metrics"]] == [(1, 1), (2, 1), (3, 1), (4, 1)]
    run.append_metrics({"step": 3, "max_steps": 8, "loss": 1.9, "attempt": 2})
    _, page = await get(jp_fetch, "runs", "tickets-v2", "metrics", params={"after": 3, "attempt": 1})
    assert [(r["step"], r["loss"], r["attempt"]) for r in page["metrics"]] == [(3, 1.9, 2)] and page["attempt"] == 2
    _, listing = await get(jp_fetch, "runs")
    assert next(r for r in listing["runs"] if r["name"] == "tickets-v2")["last_train_loss"] == 1.9


@pytest.mark.parametrize("line", [1, 2])
async def test_a_run_whose_damaged_metrics_line_is_fixed_lists_as_usual_again(jp_fetch, store, line):
    run = store.get("tickets-v2")
    metrics = run.path / "metrics.jsonl"
    records = [json.loads(text) for text in metrics.read_text().splitlines()]
    loss = records[line - 1]["loss"]
    records[line - 1]["loss"] = str(loss)
    metrics.write_text("".join(json.dumps(r) + "\n" for r in records))

    async def tickets_v2() -> dict:
        return next(r for r in (await get(jp_fetch, "runs"))[1]["runs"] if r["name"] == "tickets-v2")

    assert (await tickets_v2())["damage"] == f'metrics.jsonl line {line}: loss is "{loss}", not a number'
    log(run, 3, 8, 2.0)  # training goes on past the damaged line: still damaged
    assert (await tickets_v2())["status"] == "damaged"
    with open(metrics, "r+") as f:  # fixed in place, as an editor that keeps the file's inode does
        text = f.read().replace(f'"loss": "{loss}"', f'"loss": {loss}')
        f.seek(0)
        f.write(text)
        f.truncate()
    row = await tickets_v2()
    assert (row["status"], row["damage"], row["last_train_loss"]) == ("running", None, 2.0)
