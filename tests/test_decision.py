"""The recommendation and its arithmetic, on figures worked out by hand."""

from __future__ import annotations

import pytest

from jupyter_finetune.evaluation.curves import learning_trend
from jupyter_finetune.evaluation.decision import (BOTH, FINE_TUNE, NOTHING, PROMPTING, USE_RAG, Bar, Costs,
                                                  SystemFigures, break_even, default_bar, recommend, round_up,
                                                  usd)

PRICE = 0.10  # $ per 1M tokens


def fig(score: float, tokens: float, latency: float = 1.0) -> SystemFigures:
    return SystemFigures(score, tokens, latency)


def test_break_even_is_training_cost_over_the_saving_per_request():
    # 400 tokens at $0.10/1M = $0.00004 a request; $0.12 of training / $0.00004 = 3,000 requests.
    b = break_even("fine-tuned", "retrieval", 400, 0.25, Costs(0.12, PRICE, requests_per_day=1000))
    assert b.saving_usd == pytest.approx(4e-5) and b.requests == 3000 and b.days == 3
    assert "pays for itself after 3,000 requests (3 days at 1,000/day)" in b.text()
    assert "saves 400 prompt tokens ($0.000040) and +0.25 s per request against retrieval" in b.text()
    # $1.00 / (1,234 tokens x $0.10/1M) = 8,103.7 -> 8,104 requests, shown rounded up to 8,200; 2 days at 5,000/day.
    b = break_even("fine-tuned", "fewshot", 1234, 0.0, Costs(1.0, PRICE, requests_per_day=5000))
    assert b.requests == 8104 and "after 8,200 requests (2 days at 5,000/day)" in b.text()
    never = break_even("fine-tuned+rag", "rag", -3, 0.0, Costs(0.5, PRICE))
    assert never.requests is None
    assert never.text() == ("fine-tuned+rag needs 3 more prompt tokens per request against rag: its training ($0.50) "
                            "never pays back in prompt costs")
    assert [usd(x) for x in (0.12, 0.0048, 1.0, 1234.5, 0.0)] == ["$0.12", "$0.0048", "$1.00", "$1,234.50", "$0.00"]
    assert [round_up(n) for n in (7, 99, 100, 101, 41_001, 999_999)] == [7, 99, 100, 110, 42_000, 1_000_000]


def test_hours_when_it_pays_back_within_a_day():
    b = break_even("fine-tuned", "fewshot", 500, 0.1, Costs(0.005, PRICE, requests_per_day=1000))
    assert b.requests == 100 and "(2 hours at 1,000/day)" in b.text()  # 100 / 1,000 a day = 2.4 hours


BAR = Bar("exact", 0.8, False, True)


def test_prompting_is_enough_when_fine_tuning_would_not_pay_back_in_time():
    # retrieval passes; fine-tuned passes and saves 300 tokens ($0.00003) a request: $10 of training
    # needs 333,334 requests, 334 days at 1,000/day, beyond the 30-day payback.
    figures = {"fine-tuned": fig(0.95, 100), "base": fig(0.2, 100), "fewshot": fig(0.7, 350),
               "retrieval": fig(0.85, 400)}
    r = recommend(figures, BAR, Costs(10.0, PRICE))
    assert r.outcome == PROMPTING and r.system == "retrieval" and r.passing == ("fine-tuned", "retrieval")
    assert r.break_even.requests == 333_334
    assert "pays for itself after 340,000 requests (334 days at 1,000/day), beyond the 30-day payback" in r.text
    assert r.lines[-1] == "recommendation: prompting is enough (retrieval)"
    assert r.lines[0] == "bar exact>=0.80: passes: fine-tuned 0.95, retrieval 0.85; fails: fewshot 0.70, base 0.20"


def test_fine_tune_when_its_shorter_prompts_pay_back_within_the_payback():
    figures = {"fine-tuned": fig(0.95, 100, 0.5), "base": fig(0.2, 100), "retrieval": fig(0.85, 400, 0.75)}
    r = recommend(figures, BAR, Costs(0.3, PRICE, requests_per_day=5000))  # 10,000 requests: 2 days
    assert r.outcome == FINE_TUNE and r.system == "fine-tuned"
    assert "fine-tuned saves 300 prompt tokens ($0.000030) and +0.25 s per request against retrieval" in r.text
    assert "pays for itself after 10,000 requests (2 days at 5,000/day)" in r.text
    # With no prompt passing, fine-tuning is the only way to the bar, and the saving is still shown.
    alone = recommend({**figures, "retrieval": fig(0.6, 400)}, BAR, Costs(100.0, PRICE))
    assert alone.outcome == FINE_TUNE and "no system without fine-tuning passes (best: retrieval)" in alone.text
    assert "(though retrieval fails the bar)" in alone.text


def test_use_rag_when_the_facts_are_in_the_documents():
    figures = {"fine-tuned": fig(0.10, 40), "base": fig(0.0, 40), "retrieval": fig(0.05, 200),
               "rag": fig(0.82, 300), "fine-tuned+rag": fig(0.84, 300)}
    r = recommend(figures, BAR, Costs(0.5, PRICE))
    # rag and fine-tuned+rag both pass with the same prompt: training buys nothing.
    assert r.outcome == USE_RAG and r.system == "rag" and "never pays back" in r.text


def test_fine_tune_and_use_rag_when_only_both_pass():
    figures = {"fine-tuned": fig(0.30, 40), "base": fig(0.0, 40), "rag": fig(0.55, 300),
               "fine-tuned+rag": fig(0.90, 300)}
    r = recommend(figures, BAR, Costs(0.5, PRICE))
    assert r.outcome == BOTH and r.system == "fine-tuned+rag" and r.passing == ("fine-tuned+rag",)
    assert "no system without fine-tuning passes (best: rag)" in r.text


def test_nothing_passes_says_so_with_the_advice_from_the_curves():
    figures = {"fine-tuned": fig(0.5, 40), "base": fig(0.1, 40), "fewshot": fig(0.3, 200)}
    r = recommend(figures, BAR, Costs(0.5, PRICE), advice="eval loss was still falling at the end")
    assert r.outcome == NOTHING and r.system is None and r.break_even is None
    assert r.lines[-2:] == ("eval loss was still falling at the end", "nothing passes: no system reaches exact 0.80")


def test_without_a_threshold_a_tie_with_the_best_passes_and_the_simpler_wins():
    scores = {"fine-tuned": 0.90, "fewshot": 0.86, "base": 0.2}
    bar = default_bar("exact", scores)
    assert bar.value == pytest.approx(0.85) and "no --threshold: within 0.05 of the best" in bar.text()
    figures = {"fine-tuned": fig(0.90, 100), "fewshot": fig(0.86, 100), "base": fig(0.2, 100)}
    assert recommend(figures, bar, Costs(0.0, PRICE)).outcome == PROMPTING  # same cost: no training wins
    assert default_bar("exact", {"a": 0.0, "b": 0.0}).passes(0.0) is False


def _records(evals: list[float], trains: list[float]) -> list[dict]:
    return ([{"step": 10 * (i + 1), "loss": v} for i, v in enumerate(trains)]
            + [{"step": 10 * (i + 1), "eval_loss": v} for i, v in enumerate(evals)])


def test_the_curves_say_whether_more_steps_or_more_data_would_help():
    falling = learning_trend(_records([2.0, 1.6, 1.3, 1.1], [2.1, 1.7, 1.4, 1.2]))
    assert falling.trend == "falling" and "(1.600 -> 1.100 over the last validations)" in falling.text and "more steps" in falling.text
    over = learning_trend(_records([2.0, 1.2, 1.3, 1.5], [2.0, 1.1, 0.6, 0.3]))
    assert over.trend == "over-fitting" and "from 1.200 (step 20) to 1.500 (step 40)" in over.text
    assert "while train loss fell to 0.300" in over.text and "more data, not more steps" in over.text
    assert learning_trend(_records([2.0, 1.5, 1.49, 1.50], [1, 1, 1, 1])).trend == "level"
    assert learning_trend(_records([], [3.0, 2.5, 2.0, 1.5, 1.2, 0.9, 0.7, 0.5])).trend == "falling"
    assert learning_trend([]).trend == "unknown"
