"""%ft_runs RUN --history: every evaluation of a real tiny run over data versions, drops flagged, adapters
never mixed."""

from __future__ import annotations

import json
import shutil

import pytest
from IPython.core.error import UsageError
from transformers import TrainerCallback

from jupyter_finetune import api
from jupyter_finetune.data import prepare, read_records
from jupyter_finetune.evaluation.drift import analyse
from jupyter_finetune.runs import EvalRecord, EvalSummary, RunStore, SystemResult
from jupyter_finetune.ui.history_view import history_html
from helpers import assert_no_controls, good_rows, run_cell


def same_kind(prediction: str, reference: str, row: object) -> float:
    """A user's format metric: the answer is JSON exactly when the reference is."""
    def is_json(text: str) -> bool:
        try:
            json.loads(text)
        except ValueError:
            return False
        return True

    return float(is_json(prediction) == is_json(reference))


class _StopAt(TrainerCallback):
    def __init__(self, step: int, stop):
        self.step, self.stop = step, stop

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            self.stop()


def _evaluate(data, runs):
    return api.evaluate("t1", data, runs_dir=runs, metrics=(same_kind, "exact"), against="base", max_new_tokens=8,
                        limit=4)


@pytest.fixture(scope="module")
def story(tiny_model_dir, tiny_tokenizer, tmp_path_factory):
    """Run t1 trained on tickets v1 (plain-text answers) to step 4 and evaluated on v1, on a newer v2 (the
    answers now JSON, which the model does not write) and on v1 again; then trained on to step 8 (another
    adapter) and evaluated on v2."""
    plain = good_rows(60)
    for row in plain:
        answer = row["messages"][-1]
        answer["content"] = json.loads(answer["content"])["priority"]
    v1 = prepare(read_records(plain), name="tickets", tokenizer=tiny_tokenizer, model=str(tiny_model_dir))
    v2 = prepare(read_records(good_rows(60)), name="tickets", tokenizer=tiny_tokenizer, model=str(tiny_model_dir))
    runs = tmp_path_factory.mktemp("runs")
    job = api.prepare_training(v1, name="t1", runs_dir=runs, steps=8, save_steps=4, batch_size=4, lr=1e-3, rank=8,
                               alpha=16, validation=0.0)
    job.extra_callbacks.append(_StopAt(4, job.stop))
    assert job.train().step == 4
    run = RunStore.at(runs).get("t1")
    first = run.adapter_hash()
    reports = [_evaluate(v1, runs), _evaluate(v2, runs), _evaluate(v1, runs)]
    assert api.prepare_training(resume="t1", runs_dir=runs).train().status == "completed"
    reports.append(_evaluate(v2, runs))
    return runs, v1, v2, first, run.adapter_hash(), reports


def test_every_evaluation_is_kept_by_data_version_date_and_adapter(story):
    runs, v1, v2, first, second, reports = story
    run = RunStore.at(runs).get("t1")
    assert len(first) == 12 and first != second  # training on changed the weights
    records = run.evaluation_history()
    assert [(r.data, r.data_version, r.adapter_hash) for r in records] == [
        ("tickets", v1.version, first), ("tickets", v2.version, first), ("tickets", v1.version, first),
        ("tickets", v2.version, second)]
    assert [r.score("same_kind") for r in records] == [1.0, 0.0, 1.0, 0.0]
    assert all(r.metrics == ("same_kind", "exact") and set(r.systems) == {"fine-tuned", "base"} for r in records)
    assert records[0].verdict == reports[0].verdict.text and records[0].date.endswith("Z")
    assert reports[2].generated == ()  # v1 again re-scores the saved answers, and is in the history all the same
    # the summary of a data version is the newest evaluation of it, with its date and adapter
    summaries = {s.data_version: s for s in run.evaluations()}
    assert summaries[v2.version].adapter_hash == second and summaries[v1.version].adapter_hash == first
    assert summaries[v2.version].date == records[3].date


def test_history_flags_a_drop_beyond_tolerance_and_never_compares_two_adapters(story):
    runs, v1, v2, first, second, _ = story
    history = api.eval_history("t1", runs_dir=runs)
    assert (history.metric, history.system, history.tolerance) == ("same_kind", "fine-tuned", 0.05)
    [drop] = history.drops  # v1 -> v2 with the first adapter; not v1 (first) -> v2 (second)
    assert (drop.before.data_version, drop.after.data_version) == (v1.version, v2.version)
    assert drop.before.adapter_hash == drop.after.adapter_hash == first
    assert drop.text().startswith(f"DROP fine-tuned same_kind 1.00 -> 0.00 (-1.00 > 0.05) from data v{v1.version}")
    last = history.entries[3]
    assert last.drop is None and last.adapter_change == f"adapter changed: {first} -> {second}"
    assert [e.segment for e in history.entries] == [0, 0, 0, 1]
    assert history.entries[2].drop is None  # a rise
    text = repr(history)
    assert drop.text() in text and f"adapter changed: {first} -> {second}" in text
    assert "1 drop(s) beyond 0.05" in text
    assert api.eval_history("t1", runs_dir=runs, tolerance=1.0).drops == []  # a fall of 1.00 is not beyond 1
    assert api.eval_history("t1", runs_dir=runs, metric="exact").drops == []


def test_the_history_shows_as_a_table_and_a_plot(story):
    runs, *_ = story
    history = api.eval_history("t1", runs_dir=runs)
    html = history_html(history)
    assert html.count("<tr") == 5 and html.count("class='drop'") == 1 and "<img src='data:image/png;base64," in html
    assert "DROP fine-tuned same_kind 1.00 -&gt; 0.00" in html and "adapter changed:" in html
    assert_no_controls(html)
    lines = history.text().splitlines()
    assert lines[1].split() == ["#", "date", "data", "adapter", "fine-tuned", "base", "flag"]


def test_a_copied_run_keeps_its_adapter_hash_and_a_torn_line_is_skipped(story, tmp_path):
    runs, _, v2, _, second, _ = story
    shutil.copytree(runs / "t1", tmp_path / "copy")
    copy = RunStore.at(tmp_path).get("copy")
    assert copy.adapter_hash() == second
    history = tmp_path / "copy" / "eval" / "history.jsonl"
    with open(history, "a") as f:
        f.write('{"date": "2030-01-01T00:00:00Z", "data_ver')  # a kill in the middle of an append
    assert len(copy.evaluation_history()) == 4
    summary = EvalSummary(v2.version, ("exact",), {"fine-tuned": SystemResult({"exact": 0.5}, 9, 0.1, 90)}, None,
                          adapter_hash=second)
    copy.save_evaluation(summary, {}, "tickets")
    records = copy.evaluation_history()
    assert len(records) == 5 and records[-1].score("exact") == 0.5 and records[-1].date
    assert history.read_text().count("\n") == 5


def test_older_files_and_lines_in_another_shape_still_read():
    old = EvalSummary.from_dict({"data_version": "abc", "metrics": ["exact"], "verdict": None,
                                 "systems": {"fine-tuned": {"scores": {"exact": 1.0}}}})
    assert (old.date, old.adapter_hash) == ("", "")
    with pytest.raises(ValueError, match="adapter_hash is missing"):
        EvalRecord.from_dict({"date": "2030-01-01T00:00:00Z", "data_version": "abc", "systems": {}})


def _record(version: str, adapter: str, score: float) -> EvalRecord:
    return EvalRecord("2030-01-01T00:00:00Z", "d", version, adapter, ("exact",),
                      {"fine-tuned": SystemResult({"exact": score}, 0, 0, 0)}, None)


def test_each_evaluation_is_compared_with_the_last_of_its_own_adapter():
    history = analyse("r", [_record("v1", "a", 0.8), _record("v1", "b", 0.2), _record("v2", "a", 0.75),
                            _record("v3", "a", 0.6)])
    assert [e.drop is not None for e in history.entries] == [False, False, False, True]  # 0.80 -> 0.75 is 0.05
    assert history.drops[0].text().startswith("DROP fine-tuned exact 0.75 -> 0.60 (-0.15 > 0.05)")
    assert [e.adapter_change for e in history.entries] == [None, "adapter changed: a -> b",
                                                          "adapter changed: b -> a", None]
    with pytest.raises(ValueError, match="--metric 'f1': the evaluations of 'r' scored exact"):
        analyse("r", [_record("v1", "a", 0.8)], metric="f1")


def test_the_magic_shows_the_history_and_says_how_to_use_it(story, shell):
    runs, *_ = story
    history, shown, _ = run_cell(shell, f"%ft_runs t1 --history --tolerance 0.05 --runs-dir {runs}")
    assert shown.startswith("t1: 4 evaluations of fine-tuned on same_kind") and "DROP fine-tuned same_kind" in shown
    formats = shell.display_formatter.format(history)[0]
    assert formats["text/html"] == history_html(history) and "<img" in formats["text/html"]
    _, shown, _ = run_cell(shell, f"%ft_runs t1 --history --metric exact --runs-dir {runs}")
    assert "no drop beyond 0.05" in shown
    RunStore.at(runs).create("fresh")
    _, shown, _ = run_cell(shell, f"%ft_runs fresh --history --runs-dir {runs}")
    assert shown.strip() == "run 'fresh' has no evaluations in its history yet: evaluate it with %ft_eval fresh " \
                            "(and again with --data NEWER on a later version of the data)"
    for line in ("--history", "t1 fresh --history", "t1 --tolerance 0.1"):
        with pytest.raises(UsageError, match=r"usage: %ft_runs RUN --history \[--tolerance 0.05\] \[--metric M\]"):
            shell.run_line_magic("ft_runs", f"{line} --runs-dir {runs}")
    with pytest.raises(UsageError, match="--metric 'f1': the evaluations of 't1' scored exact, same_kind"):
        shell.run_line_magic("ft_runs", f"t1 --history --metric f1 --runs-dir {runs}")
    with pytest.raises(UsageError, match="--tolerance -1"):
        shell.run_line_magic("ft_runs", f"t1 --history --tolerance -1 --runs-dir {runs}")
