"""%ft_chat: one message to the base model and the fine-tuned one, on a real tiny run."""

from __future__ import annotations

import json
from html import escape

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from jupyter_finetune import api
from jupyter_finetune.data import prepare, read_records
from jupyter_finetune.evaluation.chat import training_system_prompt
from jupyter_finetune.evaluation.generate import generate_timed
from jupyter_finetune.evaluation.loading import load_run
from jupyter_finetune.runs import RunStore
from jupyter_finetune.ui.chat import ChatPlayground, conversation_html
from helpers import WIDGET_VIEW, assert_no_controls, chat, run_cell, saved_outputs

SYSTEM = "You sort support tickets."
TOKENS = 12


@pytest.fixture(scope="module")
def root(tmp_path_factory, tiny_model_dir, tiny_tokenizer):
    """A store with run "c": most training rows share SYSTEM, a few have another prompt."""
    root = tmp_path_factory.mktemp("chat") / "ft_runs"
    rows = [chat(i, SYSTEM if i % 3 else "You are a pirate.") for i in range(20)]
    data = prepare(read_records(rows), name="tickets", tokenizer=tiny_tokenizer, model=str(tiny_model_dir), split=0.2)
    job = api.prepare_training(data, runs_dir=root, name="c", steps=2, batch_size=8, lr=1e-2, warmup_ratio=0.0)
    assert job.train().status == "completed"
    return root


@pytest.fixture(scope="module")
def session(root):
    return api.chat_session("c", runs_dir=root, max_new_tokens=TOKENS)


@pytest.fixture(scope="module")
def expected(root, tiny_model_dir):
    """What evaluation's own generate answers, with the adapter and inside disable_adapter."""
    loaded = load_run(RunStore.at(root).get("c"))
    model, tokenizer = loaded.model, loaded.tokenizer

    def answers(message: str, system: str = SYSTEM) -> tuple[str, str]:
        conversation = [{"role": "system", "content": system}, {"role": "user", "content": message}]
        with model.disable_adapter():
            base = generate_timed(model, tokenizer, [conversation], max_new_tokens=TOKENS, batch_size=1).answers[0]
        return base, generate_timed(model, tokenizer, [conversation], max_new_tokens=TOKENS, batch_size=1).answers[0]

    return answers


def test_system_prompt_is_the_one_most_training_rows_share(session, tmp_path):
    assert session.system == SYSTEM
    assert ChatPlayground(session).ui["system"].value == SYSTEM
    run = RunStore.at(tmp_path).create("split-vote")
    rows = [chat(i, system=f"prompt {i % 3}") for i in range(9)] + [chat(9, system=None)]
    (run.path / "data.jsonl").write_text("".join(json.dumps({**r, "split": "train", "row": i}) + "\n"
                                                 for i, r in enumerate(rows)))
    assert training_system_prompt(run) == ""  # no prompt on most rows: none is guessed


def test_answers_equal_generate_with_the_adapter_and_inside_disable_adapter(session, expected, root):
    message = "Ticket 5: the printer on floor 5 is broken, case 185."
    reply = session.ask(message)
    assert (reply.base, reply.fine_tuned) == expected(message)
    assert reply.base != reply.fine_tuned  # two training steps at lr 1e-2 changed the answer
    assert reply.system == SYSTEM and reply.base_seconds > 0 and reply.fine_tuned_seconds > 0
    one_call = api.chat("c", message, runs_dir=root, max_new_tokens=TOKENS)
    assert (one_call.base, one_call.fine_tuned) == (reply.base, reply.fine_tuned)


def test_playground_send_shows_both_answers_and_keeps_every_exchange_in_the_output(session, expected, shell):
    playground = ChatPlayground(session)
    with capture_output() as cap:
        playground.show()
        for message in ("Ticket 1: refund please", "Ticket 2: password reset"):
            playground.ui["message"].value = message
            playground.ui["send"].click()
    base, fine_tuned = expected("Ticket 2: password reset")
    assert escape(fine_tuned) in playground.ui["fine_tuned"].value and "fine-tuned" in playground.ui["fine_tuned"].value
    assert (escape(base) or "(empty answer)") in playground.ui["base"].value
    assert playground.ui["message"].value == "" and not playground.ui["send"].disabled
    record = playground.static_html()
    assert record.index("Ticket 1: refund please") < record.index("Ticket 2: password reset")
    assert escape(expected("Ticket 1: refund please")[1]) in record and "2 exchange(s)" in record
    live, kept = saved_outputs(cap.outputs)  # the widgets, and the plain output a saved notebook keeps
    assert live == {"text/plain": "Chat playground of c: a widget, live while the kernel runs; every exchange is "
                                  "recorded below", WIDGET_VIEW: playground.ui["box"].get_view_spec()}
    assert kept["text/html"] == record
    assert kept["text/plain"] == "\n\n".join(["c: base vs fine-tuned, 2 exchange(s)", *map(repr, playground.replies)])
    assert_no_controls(record)


def test_playground_sends_the_edited_system_prompt(session, expected):
    playground = ChatPlayground(session)
    playground.ui["system"].value = "You are a pirate."
    playground.ui["message"].value = "Ticket 3: refund"
    playground.ui["send"].click()
    assert playground.replies[0].fine_tuned == expected("Ticket 3: refund", "You are a pirate.")[1]


def test_ft_chat_message_shows_both_answers_in_a_terminal(shell, root, expected):
    message = "Ticket 7: the box arrived damaged"
    reply, shown, _ = run_cell(shell, f'%ft_chat c --runs-dir {root} --max-new-tokens {TOKENS} --message "{message}"')
    base, fine_tuned = expected(message)
    assert f"system: {SYSTEM}\nyou: {message}\n\nbase (" in shown
    assert f"s):\n{base}\n\nfine-tuned (" in shown and shown.rstrip().endswith(fine_tuned)
    assert (reply.base, reply.fine_tuned) == (base, fine_tuned)
    assert shell.display_formatter.format(reply)[0]["text/html"] == conversation_html([reply])


def test_ft_chat_errors_name_the_fix(shell, root, tiny_model_dir, tiny_tokenizer):
    with pytest.raises(UsageError, match="--message"):
        shell.run_line_magic("ft_chat", f"c --runs-dir {root}")
    with pytest.raises(UsageError, match=r"no run named 'nope'.*runs: c"):
        shell.run_line_magic("ft_chat", f"nope --runs-dir {root} --message hi")
    data = prepare(read_records([chat(i) for i in range(12)]), name="t", tokenizer=tiny_tokenizer,
                   model=str(tiny_model_dir), split=0.0)
    api.prepare_training(data, runs_dir=root, name="untrained", steps=1)
    with pytest.raises(UsageError, match="no adapter yet.*%ft_train --resume untrained"):
        shell.run_line_magic("ft_chat", f"untrained --runs-dir {root} --message hi")
