"""%ft_eval on preference runs: preference accuracy of base, the SFT run a DPO run started from and the DPO run,
the answers' lengths and the task metrics against the chosen answers, on a real tiny SFT -> DPO pair of runs."""

from __future__ import annotations

import json
import shutil
from html import escape

import pytest

from jupyter_finetune import api
from jupyter_finetune.data import prepare, read_records
from jupyter_finetune.evaluation import compare, run_eval
from jupyter_finetune.evaluation.loading import MODELS, START_ADAPTER, load_run, release_models
from jupyter_finetune.evaluation.preference import PreferenceScore, preference_score
from jupyter_finetune.evaluation.preference_eval import CHOSEN, REJECTED, Length, PreferenceEval
from jupyter_finetune.runs import Run, RunStore
from jupyter_finetune.ui import eval_view
from helpers import good_rows, run_cell

SFT = "sft (sft)"
"""The system of the SFT run the DPO run started from, named by its method and run name."""


def pair(i: int) -> dict:
    """A ticket whose chosen answer is short JSON and whose rejected answer is a verbose sentence."""
    prompt = [{"role": "system", "content": "You sort support tickets."},
              {"role": "user", "content": f"Ticket {i}: the printer on floor {i % 7} is broken, case {i * 37}."}]
    chosen = json.dumps({"team": "it", "priority": "high" if i % 2 else "low", "case": i})
    rejected = (f"Thank you for reaching out about ticket {i}. I think this one probably belongs to the IT team, "
                "and it seems fairly urgent, but please do not hold me to that.")
    return {"prompt": prompt, "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}]}


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tiny_tokenizer, tmp_path_factory):
    """sft (method sft on the pairs' chosen answers), dpo (--from sft) and chat (sft on plain chat rows)."""
    prefs = prepare(read_records([pair(i) for i in range(60)]), name="prefs", tokenizer=tiny_tokenizer,
                    model=str(tiny_model_dir))
    chats = prepare(read_records(good_rows(40)), name="tickets", tokenizer=tiny_tokenizer, model=str(tiny_model_dir))
    assert prefs.is_preference and len(prefs.test) == 6 and all(ex.rejected for ex in prefs.test)
    store = tmp_path_factory.mktemp("runs")
    for data, name, options in ((prefs, "sft", {"method": "sft"}), (prefs, "dpo", {"from_run": "sft"}),
                                (chats, "chat", {})):
        job = api.prepare_training(data, name=name, runs_dir=store, steps=6, batch_size=4, lr=1e-3, **options)
        assert job.train().status == "completed"
    return prefs, store


def fresh(model_dir, adapter=None):
    """A model loaded anew: the base, or the base with one adapter."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir)
    return (PeftModel.from_pretrained(base, adapter) if adapter else base).eval()


@pytest.fixture(scope="module")
def evaluated(runs, tiny_model_dir):
    """%ft_eval dpo --against base, from no model loaded, recording which weights generated each system's answers
    (the logits of one probe input at each generate call)."""
    import torch

    _, store = runs
    probe = torch.tensor([[5, 17, 42, 99, 7]])
    probes = []
    real = compare.generate_timed

    def spy(model, tokenizer, conversations, **kw):
        with torch.no_grad():
            probes.append(model(input_ids=probe).logits)
        return real(model, tokenizer, conversations, **kw)

    release_models()
    loads = MODELS.loads
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(compare, "generate_timed", spy)
        report = api.evaluate("dpo", runs_dir=store, against="base", max_new_tokens=8)
    return report, probes, MODELS.loads - loads


def test_preference_accuracy_of_base_the_sft_run_and_the_dpo_run_each_with_its_own_weights(runs, evaluated,
                                                                                         tiny_model_dir,
                                                                                         tiny_tokenizer):
    prefs, store = runs
    report, _, loads = evaluated
    pe = report.preference
    assert list(pe.scores) == ["base", SFT, "fine-tuned"] and pe.pairs == 6 and pe.method == "dpo"
    assert all(0.0 <= s.accuracy <= 1.0 for s in pe.scores.values())
    # each number is preference_score of a freshly loaded model: base alone, base + sft's adapter, base + dpo's
    for system, adapter in (("base", None), (SFT, store / "sft" / "adapter"), ("fine-tuned", store / "dpo" / "adapter")):
        expected = preference_score(fresh(tiny_model_dir, adapter), tiny_tokenizer, prefs.test)
        assert pe.scores[system].accuracy == expected.accuracy
        assert pe.scores[system].chosen_logp == pytest.approx(expected.chosen_logp, abs=1e-5)
        assert pe.scores[system].rejected_logp == pytest.approx(expected.rejected_logp, abs=1e-5)
    margins = [s.margin for s in pe.scores.values()]
    assert len({round(m, 4) for m in margins}) == 3  # three models, not one model three times
    # one base in memory: the sft adapter was loaded beside the run's own
    assert loads == 1 and set(load_run(RunStore.at(store).get("dpo")).model.peft_config) == {"default", START_ADAPTER}
    line = ("preference accuracy on 6 held-out pairs: " + " -> ".join(
        f"{label} {pe.scores[s].accuracy:.2f}" for s, label in (("base", "base"), (SFT, SFT),
                                                               ("fine-tuned", "fine-tuned (dpo)"))))
    assert pe.accuracy_line() == line
    lines = report.verdict.recommendation.lines
    assert line in lines[:-1] and lines[-1].startswith(("recommendation:", "nothing passes"))
    assert line in report.text() and line in report.verdict.text


@pytest.mark.parametrize("tokens_per_batch", [2048, 150])
def test_batched_scores_equal_each_answers_mean_log_probability_from_the_models_own_loss(
        runs, tiny_model_dir, tiny_tokenizer, monkeypatch, tokens_per_batch):
    import torch

    from jupyter_finetune.evaluation import answer_scores

    prefs, store = runs
    monkeypatch.setattr(answer_scores, "TOKENS_PER_BATCH", tokens_per_batch)  # one padded batch, or several
    model = fresh(tiny_model_dir, store / "dpo" / "adapter")
    pairs = prefs.train[:12]
    got = preference_score(model, tiny_tokenizer, pairs)

    def ids(conversation, **kw):
        text = tiny_tokenizer.apply_chat_template(conversation, tokenize=False, **kw)
        return tiny_tokenizer(text, add_special_tokens=False)["input_ids"]

    def mean_logp(prompt, answer):  # HF's loss: the mean cross-entropy over the tokens not labelled -100
        start = len(ids(prompt, add_generation_prompt=True))
        tokens = torch.tensor([ids(prompt + [{"role": "assistant", "content": answer}])])
        labels = tokens.clone()
        labels[0, :start] = -100
        with torch.no_grad():
            return -float(model(input_ids=tokens, labels=labels).loss)

    chosen = [mean_logp(ex.messages[:-1], ex.messages[-1]["content"]) for ex in pairs]
    rejected = [mean_logp(ex.messages[:-1], ex.rejected) for ex in pairs]
    assert len({len(ids(ex.messages)) for ex in pairs}) > 1  # padding is exercised
    assert got.chosen_logp == pytest.approx(sum(chosen) / 12, abs=1e-5)
    assert got.rejected_logp == pytest.approx(sum(rejected) / 12, abs=1e-5)
    assert got.accuracy == sum(c > r for c, r in zip(chosen, rejected)) / 12


def test_task_metrics_score_every_system_against_the_chosen_answer_the_sft_run_answering_with_its_adapter(
        runs, evaluated, tiny_model_dir):
    import torch

    prefs, store = runs
    report, probes, _ = evaluated
    c = report.comparison
    assert list(c.systems) == ["fine-tuned", "base", SFT] and report.generated == ("fine-tuned", "base", SFT)
    assert c.outputs.references == [ex.messages[-1]["content"] for ex in prefs.test]
    assert all(json.loads(r)["team"] == "it" for r in c.outputs.references)  # the chosen JSON, not the rejected
    assert c.metrics == ("json_fields", "json_valid", "exact")
    probe = torch.tensor([[5, 17, 42, 99, 7]])
    adapters = {"fine-tuned": store / "dpo" / "adapter", "base": None, SFT: store / "sft" / "adapter"}
    for system, logits in zip(report.generated, probes, strict=True):
        with torch.no_grad():
            expected = fresh(tiny_model_dir, adapters[system])(input_ids=probe).logits
        assert torch.allclose(logits, expected, atol=1e-5), system
    assert "sft (sft)" in c.table_text()


def test_length_table_measures_each_system_and_both_references(runs, evaluated, tiny_tokenizer):
    prefs, _ = runs
    report, _, _ = evaluated
    lengths = report.preference.lengths
    assert list(lengths) == ["fine-tuned", "base", SFT, CHOSEN, REJECTED]

    def mean_tokens(texts):
        return sum(len(tiny_tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts) / len(texts)

    answers = report.comparison.outputs.generations
    for system in ("fine-tuned", "base", SFT):
        assert lengths[system].tokens == mean_tokens(answers[system].answers)
    assert lengths[CHOSEN].tokens == mean_tokens([ex.messages[-1]["content"] for ex in prefs.test])
    assert lengths[REJECTED].tokens == mean_tokens([ex.rejected for ex in prefs.test])
    assert lengths[REJECTED].words == sum(len(ex.rejected.split()) for ex in prefs.test) / 6
    assert lengths[REJECTED].tokens > 2 * lengths[CHOSEN].tokens
    text = report.text()
    assert "mean answer length:" in text and "chosen (reference)" in text


def _pe(tuned: float, base: float, start: float | None = None) -> PreferenceEval:
    score = PreferenceScore(0.5, 4, -1.0, -1.0)
    systems = {"base": base, **({SFT: start} if start is not None else {}), "fine-tuned": tuned}
    return PreferenceEval("dpo", {s: score for s in systems},
                          {**{s: Length(t, t / 2) for s, t in systems.items()}, CHOSEN: Length(6, 3),
                           REJECTED: Length(30, 20)})


def test_one_sentence_when_the_fine_tuned_answers_have_half_as_many_tokens_again_or_more():
    assert _pe(14.9, 10).length_note() is None and _pe(10, 20).length_note() is None
    assert _pe(15, 10).length_note() == (
        "fine-tuned answers are much longer than base's (15.0 vs 10.0 tokens, 1.5x): part of any gain may be "
        "length rather than content (chosen answers average 6.0 tokens, rejected 30.0)")
    both = _pe(40, 10, 20).length_note()
    assert "than base's (40.0 vs 10.0 tokens, 4.0x) and sft (sft)'s (40.0 vs 20.0 tokens, 2.0x)" in both
    assert "than sft (sft)'s" in _pe(40, 30, 20).length_note()  # measured from the starting run too
    assert _pe(3, 0).length_note().startswith("fine-tuned answers are much longer than base's (3.0 vs 0.0 tokens)")
    assert _pe(40, 10).notes() == (_pe(40, 10).accuracy_line(), _pe(40, 10).length_note())
    assert _pe(10, 10).notes() == (_pe(10, 10).accuracy_line(),)


def test_saved_with_the_evaluation_and_in_its_history_and_reused_without_scoring_again(runs, evaluated,
                                                                                      monkeypatch):
    prefs, store = runs
    report, _, _ = evaluated
    run = RunStore.at(store).get("dpo")
    accuracy = report.preference.accuracy()
    saved = json.loads(report.path.read_text())
    assert saved["preference"] == accuracy
    assert saved["preference_pairs"]["scores"] == {s: x.to_dict() for s, x in report.preference.scores.items()}
    assert saved["preference_pairs"]["lengths"][REJECTED]["tokens"] == report.preference.lengths[REJECTED].tokens
    assert next(run.evaluations()).preference == accuracy and run.evaluation_history()[-1].preference == accuracy

    def no_scoring(*args, **kwargs):
        raise AssertionError("preference scores were measured again")

    monkeypatch.setattr(run_eval, "score_systems", no_scoring)
    again = api.evaluate("dpo", runs_dir=store, against="base", max_new_tokens=8, metrics="exact")
    assert again.generated == () and again.preference.scores == report.preference.scores
    assert again.preference.accuracy_line() in again.verdict.text
    with pytest.raises(AssertionError, match="measured again"):  # other rows: measured afresh
        api.evaluate("dpo", runs_dir=store, against="base", max_new_tokens=8, limit=3)


def test_eval_view_shows_accuracy_and_lengths_in_html(evaluated):
    report, _, _ = evaluated
    html = eval_view.static_html(report)
    assert "Preference accuracy on 6 held-out pairs" in html and "Mean answer length" in html
    for label in ("base", SFT, "fine-tuned (dpo)", CHOSEN, REJECTED):
        assert f">{label}</td>" in html
    best = max(report.preference.accuracy().values())
    assert f"<b>{best:.2f}</b>" in html
    assert html.index("Preference accuracy") < html.index("Verdict:")
    assert escape(report.preference.accuracy_line()) in html  # in the verdict's reasons


def test_an_sft_run_on_preference_pairs_reports_base_and_itself(runs, evaluated, tiny_model_dir, tiny_tokenizer):
    prefs, store = runs
    report = api.evaluate("sft", runs_dir=store, against="base", max_new_tokens=8)
    pe = report.preference
    assert list(pe.scores) == ["base", "fine-tuned"] and list(report.comparison.systems) == ["fine-tuned", "base"]
    assert pe.accuracy_line().endswith(f"-> fine-tuned (sft) {pe.scores['fine-tuned'].accuracy:.2f}")
    assert pe.scores["fine-tuned"] == evaluated[0].preference.scores[SFT]  # the same adapter, as the dpo run's start
    expected = preference_score(fresh(tiny_model_dir, store / "sft" / "adapter"), tiny_tokenizer, prefs.test)
    assert pe.scores["fine-tuned"].chosen_logp == pytest.approx(expected.chosen_logp, abs=1e-5)


def test_the_starting_system_is_named_by_its_run_and_left_out_with_against_none(runs, tmp_path):
    _, store = runs
    dpo = RunStore.at(store).get("dpo")
    assert run_eval.start_system(dpo) == SFT and run_eval.start_system(RunStore.at(store).get("sft")) is None
    shutil.copytree(dpo.path, tmp_path / "dpo")  # the run it started from is not in this store
    assert run_eval.start_system(Run(tmp_path / "dpo")) == "start (sft)"
    alone = api.evaluate("dpo", runs_dir=store, against="none", max_new_tokens=8, limit=2)
    assert list(alone.comparison.systems) == ["fine-tuned"] and list(alone.preference.scores) == ["base", SFT,
                                                                                                  "fine-tuned"]


def test_an_sft_run_on_chat_data_is_evaluated_as_before(runs):
    _, store = runs
    report = api.evaluate("chat", runs_dir=store, against="base", max_new_tokens=8, limit=4)
    assert report.preference is None and list(report.comparison.systems) == ["fine-tuned", "base"]
    saved = json.loads(report.path.read_text())
    assert set(saved) == {"adapter", "per_row", "forgetting", "outputs", "data_version", "metrics", "systems",
                          "verdict", "date", "adapter_hash"}
    history = (store / "chat" / "eval" / "history.jsonl").read_text().splitlines()
    assert "preference" not in json.loads(history[-1])
    assert "preference" not in report.text() and "Preference" not in eval_view.static_html(report)
    assert not any("preference" in line for line in report.verdict.recommendation.lines)


def test_ft_eval_in_a_real_ipython_shell_shows_accuracy_lengths_and_metrics(runs, evaluated, shell):
    _, store = runs
    report, out, published = run_cell(shell, f"%ft_eval dpo --against base --max-new-tokens 8 --runs-dir {store}")
    assert published == [] and out.strip() == report.text()
    assert report.preference.accuracy_line() in out
    for part in ("preference accuracy on 6 held-out pairs (chosen's mean log-prob", "mean answer length:",
                 "fine-tuned (dpo)", SFT, "json_fields", "rejected"):
        assert part in out
    html = shell.display_formatter.format(report)[0]["text/html"]
    assert html == eval_view.static_html(report) and "Preference accuracy on 6 held-out pairs" in html
