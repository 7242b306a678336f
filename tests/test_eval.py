"""%ft_eval: few-shot prompts from training rows only, the verdict, saved answers, on a real tiny run."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from IPython.core.error import UsageError

from jupyter_finetune import api
from jupyter_finetune.data import prepare, read_records
from jupyter_finetune.evaluation.compare import Outputs, score_outputs
from jupyter_finetune.evaluation.fewshot import pick_shots, with_shots
from jupyter_finetune.evaluation.generate import Generation, generate_timed
from jupyter_finetune.evaluation.loading import load_run
from jupyter_finetune.evaluation.metrics import METRICS
from jupyter_finetune.evaluation.decision import Costs
from jupyter_finetune.evaluation.verdict import Threshold, decide
from jupyter_finetune.runs import RunStore
from jupyter_finetune.ui import eval_view
from helpers import WIDGET_VIEW, assert_no_controls, good_rows, run_cell
from store_builders import DAMAGES, damage


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tiny_tokenizer, tmp_path_factory):
    data = prepare(read_records(good_rows(60)), name="tickets", tokenizer=tiny_tokenizer, model=str(tiny_model_dir))
    runs = tmp_path_factory.mktemp("runs")
    job = api.prepare_training(data, name="t1", runs_dir=runs, steps=4, batch_size=4, lr=1e-3, rank=8, alpha=16)
    assert job.train().status == "completed"
    return data, runs


def test_shots_come_from_the_training_split_and_follow_the_system_prompt(trained):
    data, _ = trained
    shots = pick_shots(data.train, 3, seed=0)
    assert shots == pick_shots(data.train, 3, seed=0) and all(s in data.train for s in shots)
    prompt = data.test[0].messages[:-1]
    asked = with_shots(prompt, shots)
    assert asked[0] == prompt[0] and asked[0]["role"] == "system"
    assert asked[-1] == prompt[-1] and [m["role"] for m in asked[1:-1]] == ["user", "assistant"] * 3
    test_texts = {m["content"] for ex in data.test for m in ex.messages if m["role"] != "system"}
    assert not test_texts & {m["content"] for m in asked[1:-1]}
    with pytest.raises(ValueError, match="--shots 99 but the training split has only"):
        pick_shots(data.train[:5], 99)


def _comparison(answers: dict[str, list[str]], refs: list[str], prompt_tokens: dict[str, int]):
    gens = {name: Generation(a, [prompt_tokens[name]] * len(a), [5] * len(a), 1.0) for name, a in answers.items()}
    outputs = Outputs({"shots": 3}, list(range(len(refs))), [[{"role": "user", "content": "q"}]] * len(refs), refs,
                      [0, 1, 2], gens)
    return score_outputs(outputs, {m: METRICS[m] for m in ("json_fields", "exact")}, [{}] * len(refs))


REFS = ['{"a": 1, "b": 2}'] * 4


def test_verdict_scores_every_system_against_the_bar_and_recommends_with_the_break_even():
    c = _comparison({"fine-tuned": REFS, "base": ["no"] * 4, "fewshot": ['{"a": 1}', "x", "x", "x"]}, REFS,
                    {"fine-tuned": 40, "base": 40, "fewshot": 652})
    v = decide(c, Threshold.parse("json_fields>=0.9", "json_fields"), Costs(0.01, 0.10))
    assert v.passes is True and v.recommendation.outcome == "fine-tune"
    # 612 tokens at $0.10 per 1M save $0.0000612 a request: $0.01 of training pays back after 164 requests.
    assert v.recommendation.lines == (
        "bar json_fields>=0.90: passes: fine-tuned 1.00; fails: fewshot 0.12, base 0.00",
        "no system without fine-tuning passes (best: fewshot)",
        "fine-tuned saves 612 prompt tokens ($0.000061) and +0.00 s per request against fewshot; fine-tuning pays "
        "for itself after 170 requests (4 hours at 1,000/day) (though fewshot fails the bar)",
        "recommendation: fine-tune (fine-tuned)")
    assert v.recommendation.break_even.requests == 164 and v.text == "; ".join(v.recommendation.lines)


def test_verdict_says_when_prompting_is_enough_and_refuses_a_bar_it_cannot_judge():
    half = [REFS[0], REFS[0], "x", "x"]
    c = _comparison({"fine-tuned": half, "fewshot": REFS}, REFS, {"fine-tuned": 40, "fewshot": 300})
    v = decide(c, Threshold.parse("0.9", "json_fields"))
    assert v.passes is False and v.recommendation.outcome == "prompting is enough"
    assert v.text.startswith("bar json_fields>=0.90: passes: fewshot 1.00; fails: fine-tuned 0.50")
    no_bar = decide(c)
    assert no_bar.passes is None and "(no --threshold: within 0.05 of the best)" in no_bar.text
    with pytest.raises(ValueError, match="'f1' is not among the metrics scored.*add it with --metric"):
        decide(c, Threshold.parse("f1>=0.5", "json_fields"))
    for wrong in ("json_fields=>0.9", "json_fields<0.9"):
        with pytest.raises(ValueError, match="write METRIC>=X"):
            Threshold.parse(wrong, "json_fields")


def test_evaluate_runs_every_prompting_system_saves_answers_and_reuses_them(trained):
    data, runs = trained
    report = api.evaluate("t1", runs_dir=runs, threshold="json_fields>=0.5", max_new_tokens=8, limit=4)
    c = report.comparison
    systems = ["fine-tuned", "base", "fewshot", "retrieval"]
    assert list(c.systems) == systems and c.metrics == ("json_fields", "json_valid", "exact")
    assert report.generated == tuple(systems) and c.rows == 4
    # the same rows and decoding as plain generate, with and without the adapter
    loaded = load_run(RunStore.at(runs).get("t1"))
    model, tokenizer = loaded.model, loaded.tokenizer
    prompts = [ex.messages[:-1] for ex in data.test[:4]]
    assert c.outputs.generations["fine-tuned"].answers == generate_timed(model, tokenizer, prompts,
                                                                         max_new_tokens=8).answers
    with model.disable_adapter():
        assert c.outputs.generations["base"].answers == generate_timed(model, tokenizer, prompts,
                                                                       max_new_tokens=8).answers
        shots = [ex for ex in data.train if ex.row in c.outputs.shot_rows]
        assert len(shots) == 3
        by_row = {ex.row: ex for ex in data.train}
        near = [[by_row[r] for r in rows] for rows in c.outputs.neighbours]  # training rows only, 3 a row
        assert [len(n) for n in near] == [3] * 4 and not {r for rs in c.outputs.neighbours for r in rs} & set(c.outputs.rows)
        assert c.outputs.generations["retrieval"].answers == generate_timed(
            model, tokenizer, [with_shots(p, n) for p, n in zip(prompts, near)], max_new_tokens=8).answers
    few = c.systems["fewshot"]
    assert few.prompt_tokens > c.systems["base"].prompt_tokens + 3 * 10  # three examples in every prompt
    saved = json.loads(report.path.read_text())
    assert report.path == runs / "t1" / "eval" / f"{data.version}.json"
    assert set(saved["systems"]) == set(systems) and len(saved["outputs"]["rows"]) == 4
    assert "$/1k requests" in c.table()[0] and "training: " in report.text() and "serving at $0.10 per 1M" in report.text()
    again = api.evaluate("t1", runs_dir=runs, metrics="exact,f1", max_new_tokens=8, limit=4)
    assert again.generated == () and again.comparison.metrics == ("exact", "f1")
    assert again.comparison.outputs.generations == c.outputs.generations
    assert "answers reused from" in again.text()
    alone = api.evaluate("t1", runs_dir=runs, max_new_tokens=8, limit=4, against="none")  # reused, not generated
    assert alone.generated == () and list(alone.comparison.systems) == ["fine-tuned"]
    assert api.evaluate("t1", runs_dir=runs, max_new_tokens=6, limit=4, against="base").generated == ("fine-tuned", "base")


def test_forgetting_check_compares_general_prompt_perplexity(trained):
    _, runs = trained
    report = api.evaluate("t1", runs_dir=runs, max_new_tokens=4, limit=2, against="", forgetting=True)
    f = report.forgetting
    assert len(f.prompts) == len(f.base) == len(f.fine_tuned) == 12
    assert all(b > 1 for b in f.base) and f.base != f.fine_tuned
    assert f.ratio == pytest.approx(sum(f.fine_tuned) / sum(f.base))
    assert "forgetting check: general-prompt perplexity" in report.text()


def test_per_example_view_filters_to_failures(trained):
    _, runs = trained
    report = api.evaluate("t1", runs_dir=runs, threshold="json_fields>=0.5", max_new_tokens=8, limit=4)
    scores = report.comparison.systems["fine-tuned"].per_row["json_fields"]
    failing = [i for i, s in enumerate(scores) if s < 1]
    assert eval_view.selected_rows(report, "fine-tuned fails") == failing
    html = eval_view.static_html(report)
    assert "Verdict:" in html and html.count("<tr>") == 1 + 4 + (1 + len(failing) if failing else 0)
    widget = eval_view.browser(report)
    which, out = widget.children[1].children[0], widget.children[2]
    which.value = "fine-tuned fails"
    assert f"<p>{len(failing)} rows</p>" in out.value or (not failing and "no rows" in out.value)
    which.value = "all"
    assert out.value.startswith("<p>4 rows</p>")


def test_where_widgets_render_a_report_shows_its_record_then_the_browser_which_reads_as_text(trained, shell,
                                                                                               monkeypatch):
    from jupyter_finetune.ui import display

    _, runs = trained
    monkeypatch.setattr(display, "widgets_available", lambda: True)
    display.register(shell)
    report, _, published = run_cell(shell, f"%ft_eval t1 --limit 4 --max-new-tokens 8 --against base --runs-dir {runs}")
    record, browser = published
    assert record.data == {"text/plain": repr(report), "text/html": eval_view.static_html(report)}
    assert_no_controls(record.data["text/html"])
    assert set(browser.data) == {"text/plain", WIDGET_VIEW}
    assert browser.data["text/plain"] == ("Per-example answers of t1 (4 held-out rows): a widget, live while the kernel "
                                          "runs; the report above lists the rows where fine-tuned scores below 1")


def test_ft_eval_magic_shows_the_table_and_verdict_once(trained, shell):
    data, runs = trained
    shell.user_ns["tickets"] = data
    line = (f"%ft_eval t1 --data tickets:test --limit 4 --max-new-tokens 8 --against base "
            f"--metric exact,f1,rougeL --threshold rougeL>=0.5 --runs-dir {runs}")
    report, out, published = run_cell(shell, line)
    assert published == []  # nothing displayed beside the cell's value
    assert "system" in out and "rougeL" in out and "fine-tuned" in out and "base" in out
    assert "verdict:\n  bar rougeL>=0.50: " in out and out.strip() == report.text()
    assert report.verdict.recommendation.lines[-1] in out
    assert shell.display_formatter.format(report)[0]["text/html"] == eval_view.static_html(report)
    assert run_cell(shell, f"kept = {line}")[1:] == ("", [])
    assert shell.user_ns["kept"].verdict.metric == "rougeL"
    alone = shell.run_line_magic("ft_eval", f"t1 --data tickets --limit 2 --max-new-tokens 8 --against none "
                                             f"--runs-dir {runs}")  # new settings: no saved answers to show
    assert list(alone.comparison.systems) == ["fine-tuned"] and alone.generated == ("fine-tuned",)
    with pytest.raises(UsageError, match="optionally :test or :train"):
        shell.run_line_magic("ft_eval", f"t1 --data tickets:dev --runs-dir {runs}")
    with pytest.raises(UsageError, match="no run named 'nope'"):
        shell.run_line_magic("ft_eval", f"nope --runs-dir {runs}")
    with pytest.raises(UsageError, match="--data 'missing'"):
        shell.run_line_magic("ft_eval", f"t1 --data missing --runs-dir {runs}")


@pytest.mark.parametrize("case", ["string step", "metrics line not an object"])
def test_ft_eval_refuses_a_damaged_run_by_name_with_the_file_and_the_fix(trained, shell, case):
    _, runs = trained
    file, change, reason = DAMAGES[case]
    damaged = runs / "t1-damaged"
    shutil.copytree(runs / "t1", damaged)
    try:
        damage(RunStore.at(runs).get("t1-damaged"), file, change)
        written = {p: p.stat().st_mtime_ns for p in damaged.rglob("*")}
        with pytest.raises(UsageError, match=rf"run 't1-damaged' is damaged: {re.escape(reason)}.*Fix or delete "
                                             rf"{re.escape(str(damaged / file))}, or train it again.*--overwrite"):
            shell.run_line_magic("ft_eval", f"t1-damaged --limit 1 --max-new-tokens 2 --against none --runs-dir {runs}")
        assert {p: p.stat().st_mtime_ns for p in damaged.rglob("*")} == written  # nothing evaluated, nothing saved
    finally:
        shutil.rmtree(damaged)


def test_rag_answers_with_passages_of_the_docs_and_cites_them_per_row(trained, tmp_path):
    data, runs = trained
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "printers.md").write_text("# Printers\n\nA broken printer on any floor goes to the it team.\n\n"
                                      "## Cases\n\nEvery case number is kept for a year.\n")
    (docs / "hours.html").write_text("<h1>Hours</h1><p>The help desk opens at nine.</p>")
    report = api.evaluate("t1", runs_dir=runs, docs=str(docs), max_new_tokens=6, limit=3)
    c = report.comparison
    assert list(c.systems) == ["fine-tuned", "base", "fewshot", "retrieval", "rag"]  # rag joins with --docs
    assert [ids[0] for ids in c.outputs.citations] == ["printers.md#1"] * 3  # "printer ... floor" ranks first
    assert all(set(ids) <= {"printers.md#1", "printers.md#2", "hours.html#1"} for ids in c.outputs.citations)
    from jupyter_finetune.data.documents import read_documents
    from jupyter_finetune.evaluation.retrieval import rag_prompt, retrieve_passages

    loaded = load_run(RunStore.at(runs).get("t1"))
    found = retrieve_passages(read_documents(docs), data.test[:3], 3)
    asked = [rag_prompt(ex.messages[:-1], ps[::-1]) for ex, ps in zip(data.test[:3], found)]
    assert "A broken printer on any floor goes to the it team." in asked[0][-1]["content"]
    with loaded.model.disable_adapter():
        assert c.outputs.generations["rag"].answers == generate_timed(loaded.model, loaded.tokenizer, asked,
                                                                      max_new_tokens=6).answers
    assert c.systems["rag"].prompt_tokens > c.systems["base"].prompt_tokens + 20
    assert "cites printers.md#1" in eval_view.examples_html(report, [0])
    both = api.evaluate("t1", runs_dir=runs, docs=str(docs), against="fine-tuned+rag", max_new_tokens=6, limit=3)
    assert both.generated == ("fine-tuned+rag",)  # the other answers were kept; the adapter answers with passages
    (docs / "hours.html").write_text("<h1>Hours</h1><p>The help desk opens at ten.</p>")  # new docs: new answers
    assert api.evaluate("t1", runs_dir=runs, docs=str(docs), against="rag", max_new_tokens=6, limit=3).generated == (
        "fine-tuned", "rag")
    with pytest.raises(ValueError, match="--against rag retrieves passages from your documents: give them with --docs"):
        api.evaluate("t1", runs_dir=runs, against="base,rag", limit=3)
    with pytest.raises(ValueError, match="unknown system.*compare with base, fewshot, retrieval, rag, fine-tuned\\+rag"):
        api.evaluate("t1", runs_dir=runs, against="gpt4", limit=3)
