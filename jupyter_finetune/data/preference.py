"""Preference pairs in the layouts people have, each as one prompt, a chosen and a rejected answer.

The layouts: OpenAI's preference JSONL (``input.messages``, ``preferred_output``,
``non_preferred_output``); TRL's ``prompt``/``chosen``/``rejected`` as text or as messages; and TRL's
implicit prompt, the Anthropic-HH style of two whole conversations (as messages, or as text with
``Human:``/``Assistant:`` turns) that differ only in the last answer. All become one ``Example``:
the prompt plus the chosen answer as ``messages``, the rejected answer as ``rejected``.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from .problems import Problem

SIGNATURES: tuple[tuple[str, ...], ...] = (("preferred_output", "non_preferred_output"), ("chosen", "rejected"))
"""Keys that mark a row as a preference pair (any one set)."""
KNOWN_KEYS = {"input", "preferred_output", "non_preferred_output", "prompt", "chosen", "rejected"}
_HH_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):[ \t]?")
_HH_ROLES = {"Human": "user", "Assistant": "assistant"}

Chat = Callable[..., "list[dict[str, str]] | None"]
Text = Callable[..., "str | None"]


def is_pair(value: Any) -> bool:
    return isinstance(value, dict) and any(all(k in value for k in keys) for keys in SIGNATURES)


def pair(value: dict, row: int, problems: list[Problem], chat: Chat,
         text: Text) -> tuple[list[dict[str, str]], str] | None:
    """The prompt plus chosen answer, and the rejected answer; or None with the row's problem added."""
    before = len(problems)
    if "preferred_output" in value or "non_preferred_output" in value:
        found = _openai(value, row, problems, chat)
    elif "chosen" in value and "rejected" in value:
        found = _explicit(value, row, problems, chat, text) if "prompt" in value else \
            _implicit(value, row, problems, chat, text)
    else:
        missing = "rejected" if "chosen" in value else "chosen"
        problems.append(Problem("error", "missing_key", (row,), f"missing key {missing!r}",
                                "every preference row needs a chosen and a rejected answer ('chosen'/'rejected', "
                                "or OpenAI's 'preferred_output'/'non_preferred_output')", field=missing))
        return None
    if found is None or len(problems) > before:
        return None
    prompt, chosen, rejected = found
    for side, answer in (("chosen", chosen), ("rejected", rejected)):
        if not answer.strip():
            problems.append(Problem("error", "empty_content", (row,), f"the {side} answer is empty",
                                    "fill it in or drop the row", field=side))
            return None
    if chosen == rejected:
        problems.append(Problem("error", "same_answers", (row,), "the chosen and the rejected answer are identical",
                                "a pair teaches only through a difference: fix the rejected answer or drop the row",
                                field="rejected"))
        return None
    return prompt + [{"role": "assistant", "content": chosen}], rejected


def _openai(value: dict, row: int, problems: list[Problem],
            chat: Chat) -> tuple[list[dict[str, str]], str, str] | None:
    for key in ("input", "preferred_output", "non_preferred_output"):
        if key not in value:
            problems.append(Problem("error", "missing_key", (row,), f"missing key {key!r}",
                                    "OpenAI preference rows need 'input' ({'messages': [...]}), 'preferred_output' "
                                    "and 'non_preferred_output'", field=key))
            return None
    source = value["input"]
    if not isinstance(source, dict) or "messages" not in source:
        problems.append(Problem("error", "no_messages", (row,), "'input' must be an object with 'messages'",
                                'write "input": {"messages": [{"role": "user", "content": ...}]}', field="input"))
        return None
    prompt = chat(source["messages"], row, problems, "input.messages")
    chosen = _answer(value["preferred_output"], row, problems, chat, "preferred_output")
    rejected = _answer(value["non_preferred_output"], row, problems, chat, "non_preferred_output")
    return None if prompt is None or chosen is None or rejected is None else (prompt, chosen, rejected)


def _explicit(value: dict, row: int, problems: list[Problem], chat: Chat,
              text: Text) -> tuple[list[dict[str, str]], str, str] | None:
    raw = value["prompt"]
    if isinstance(raw, list):
        prompt = chat(raw, row, problems, "prompt")
        chosen = _answer(value["chosen"], row, problems, chat, "chosen")
        rejected = _answer(value["rejected"], row, problems, chat, "rejected")
    else:
        said = text(raw, row, "prompt", problems)
        prompt = None if said is None else [{"role": "user", "content": said}]
        chosen = _answer(value["chosen"], row, problems, chat, "chosen", text)
        rejected = _answer(value["rejected"], row, problems, chat, "rejected", text)
    return None if prompt is None or chosen is None or rejected is None else (prompt, chosen, rejected)


def _implicit(value: dict, row: int, problems: list[Problem], chat: Chat,
              text: Text) -> tuple[list[dict[str, str]], str, str] | None:
    """Two whole conversations: the prompt is what they share, each side's last answer what differs."""
    sides = []
    for key in ("chosen", "rejected"):
        raw = value[key]
        if isinstance(raw, str):
            said = text(raw, row, key, problems)
            conversation = None if said is None else _hh_turns(said, row, key, problems)
        else:
            conversation = chat(raw, row, problems, key)
        if conversation is None:
            return None
        if conversation[-1]["role"] != "assistant":
            problems.append(Problem("error", "no_final_assistant", (row,),
                                    f"the {key} conversation does not end with an assistant answer",
                                    "end both conversations with the assistant's answer", field=key))
            return None
        sides.append(conversation)
    chosen, rejected = sides
    if chosen[:-1] != rejected[:-1]:
        at = next((i for i, (a, b) in enumerate(zip(chosen[:-1], rejected[:-1])) if a != b),
                  min(len(chosen), len(rejected)) - 1)
        problems.append(Problem("error", "prompts_differ", (row,),
                                f"the two conversations differ before their last answer (message {at + 1})",
                                "both sides must share the same prompt and differ only in the final assistant "
                                "answer; or give the prompt separately as 'prompt'", field="rejected"))
        return None
    return chosen[:-1], chosen[-1]["content"], rejected[-1]["content"]


def _hh_turns(said: str, row: int, field: str, problems: list[Problem]) -> list[dict[str, str]] | None:
    """``Human: ... Assistant: ...`` text as messages."""
    parts = _HH_TURN.split(said)
    if len(parts) < 3 or parts[0].strip():
        problems.append(Problem("error", "no_turns", (row,), f"the {field} text has no 'Human:'/'Assistant:' turns",
                                "write each side as messages, or as Anthropic-HH text ('\\n\\nHuman: ...\\n\\n"
                                "Assistant: ...'), or give the prompt separately as 'prompt'", field=field))
        return None
    return [{"role": _HH_ROLES[role], "content": content.strip()} for role, content in zip(parts[1::2], parts[2::2])]


def _answer(raw: Any, row: int, problems: list[Problem], chat: Chat, field: str,
            text: Text | None = None) -> str | None:
    """One assistant answer, from text (when the prompt is text) or a list of one assistant message."""
    if text is not None and isinstance(raw, str):
        return text(raw, row, field, problems)
    messages = chat(raw, row, problems, field)
    if messages is None:
        return None
    if len(messages) != 1 or messages[0]["role"] != "assistant":
        problems.append(Problem("error", "not_one_answer", (row,),
                                f"{field!r} holds {len(messages)} message(s) from "
                                f"{', '.join(m['role'] for m in messages)}, not one assistant answer",
                                f'write "{field}": [{{"role": "assistant", "content": ...}}]', field=field))
        return None
    return messages[0]["content"]
