"""Detect the input formats and normalise every row to one conversation form.

The one form is OpenAI's chat form: a list of ``{"role", "content"}`` dicts with roles
system/user/assistant. Plain text rows become a single assistant message (all of it carries
loss); ``Example.is_text`` keeps them apart from chats. Preference pairs (data.preference) are
the prompt and the chosen answer, with the rejected answer beside them in ``Example.rejected``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Callable, Literal

from . import preference
from .problems import Problem
from .readers import RawRow

Format = Literal["preference", "messages", "prompt_completion", "alpaca", "sharegpt", "text"]
FORMATS: tuple[str, ...] = ("preference", "messages", "prompt_completion", "alpaca", "sharegpt", "text")
"""In the order detection tries them: a preference row may also carry a prompt or messages."""
ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "model": "assistant",
    "chatgpt": "assistant",
}
ROLE_HINTS = {"bot": "assistant", "ai": "assistant", "model": "assistant", "gpt": "assistant",
              "human": "user", "developer": "system", "instruction": "system"}
_SIGNATURES: dict[str, tuple[str, ...]] = {
    "messages": ("messages",),
    "sharegpt": ("conversations",),
    "alpaca": ("instruction", "output"),
    "prompt_completion": ("prompt", "completion"),
    "text": ("text",),
}
_KNOWN_KEYS: dict[str, set[str]] = {
    "preference": preference.KNOWN_KEYS,
    "messages": {"messages"},
    "sharegpt": {"conversations", "system"},
    "alpaca": {"instruction", "input", "output", "system"},
    "prompt_completion": {"prompt", "completion"},
    "text": {"text"},
}


@dataclass(frozen=True, slots=True)
class Example:
    """One normalised training example and the source row it came from."""

    row: int
    messages: list[dict[str, str]]
    is_text: bool = False
    rejected: str | None = None
    """A preference pair's rejected answer to the prompt in ``messages[:-1]`` (the chosen one is ``messages[-1]``)."""


def detect_format(rows: list[RawRow]) -> str | None:
    """The format whose keys most of the first 200 readable objects carry."""
    counts = dict.fromkeys(FORMATS, 0)
    seen = 0
    for raw in rows:
        if isinstance(raw.value, dict):
            seen += 1
            if preference.is_pair(raw.value):
                counts["preference"] += 1
                continue
            for fmt, keys in _SIGNATURES.items():
                if all(k in raw.value for k in keys):
                    counts[fmt] += 1
                    break
            if seen >= 200:
                break
    best = max(FORMATS, key=lambda f: counts[f])
    return best if counts[best] else None


def unknown_format_problem(rows: list[RawRow]) -> Problem:
    keys = sorted({k for r in rows[:200] if isinstance(r.value, dict) for k in r.value})
    expected = "; ".join([f"{f}: {', '.join(k)}" for f, k in _SIGNATURES.items()]
                         + [f"preference: {' or '.join('/'.join(k) for k in preference.SIGNATURES)}"])
    return Problem(
        "error", "unknown_format", (), f"cannot tell the data format from the keys {keys}",
        f"use one of the known layouts ({expected}) or name it with --format",
    )


def normalise(rows: list[RawRow], fmt: str) -> tuple[list[Example], list[Problem]]:
    """Every readable row as an Example; every unreadable one as a Problem naming it."""
    convert = _CONVERTERS.get(fmt)
    known = _KNOWN_KEYS[fmt]
    examples: list[Example] = []
    problems: list[Problem] = []
    unknown_keys: dict[str, list[int]] = {}
    for raw in rows:
        if raw.error is not None:
            problems.append(Problem("error", "invalid_json", (raw.row,), raw.error,
                                    "make each line one complete JSON object (check quotes, commas and brackets)"))
            continue
        value = raw.value
        if not isinstance(value, dict):
            problems.append(Problem("error", "not_an_object", (raw.row,),
                                    f"expected a JSON object, found {type(value).__name__}",
                                    f"write each row as an object in the {fmt} layout"))
            continue
        for key in value.keys() - known:
            unknown_keys.setdefault(key, []).append(raw.row)
        before = len(problems)
        if fmt == "preference":
            found = preference.pair(value, raw.row, problems, _chat, _text)
            if found is not None:
                examples.append(Example(raw.row, found[0], rejected=found[1]))
            continue
        messages = convert(value, raw.row, problems)
        if messages is not None and len(problems) == before:
            examples.append(Example(raw.row, messages, fmt == "text"))
    for key, key_rows in unknown_keys.items():
        problems.append(Problem("warning", "unknown_key", tuple(key_rows), f"unknown key {key!r} is ignored",
                                f"remove it, or check the format (detected {fmt}; known keys: {sorted(known)})",
                                field=key))
    return examples, problems


def _missing(row: int, key: str, fmt: str, problems: list[Problem]) -> None:
    problems.append(Problem("error", "missing_key", (row,), f"missing key {key!r}",
                            f"every {fmt} row needs {', '.join(repr(k) for k in _SIGNATURES[fmt])}; "
                            "if rows mix formats, convert them to one", field=key))


def _text(value: Any, row: int, field: str, problems: list[Problem], *, required: bool = True) -> str | None:
    """Content as a string; OpenAI text parts are joined, anything else is named."""
    if isinstance(value, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in value):
        value = "".join(str(p.get("text", "")) for p in value)
    if not isinstance(value, str):
        kind = "null" if value is None else type(value).__name__
        problems.append(Problem("error", "not_a_string", (row,), f"content is {kind}, not text",
                                "write the content as a JSON string (images and other parts are not supported)",
                                field=field))
        return None
    if required and not value.strip():
        problems.append(Problem("error", "empty_content", (row,), "content is empty",
                                "fill it in or drop the row", field=field))
        return None
    return value


def _chat(messages: Any, row: int, problems: list[Problem], field: str,
          role_key: str = "role", content_key: str = "content",
          role_map: dict[str, str] | None = None) -> list[dict[str, str]] | None:
    if not isinstance(messages, list) or not messages:
        problems.append(Problem("error", "no_messages", (row,), f"{field!r} must be a non-empty list of messages",
                                f'write "{field}": [{{"{role_key}": ..., "{content_key}": ...}}, ...]', field=field))
        return None
    out = []
    for i, message in enumerate(messages):
        where = f"{field}[{i}]"
        if not isinstance(message, dict):
            problems.append(Problem("error", "not_an_object", (row,), f"message is {type(message).__name__}, not an object",
                                    f'write it as {{"{role_key}": ..., "{content_key}": ...}}', field=where))
            return None
        if "tool_calls" in message or message.get(role_key) in ("tool", "function"):
            problems.append(Problem("error", "unsupported_tool", (row,), "tool calls and tool messages are not supported",
                                    "drop tool turns, or put their text into ordinary user/assistant turns",
                                    field=where))
            return None
        if role_key not in message:
            problems.append(Problem("error", "missing_role", (row,), f"message has no {role_key!r}",
                                    f"add {role_key!r}: one of {', '.join(role_map or ROLES)}", field=where))
            return None
        raw_role = message[role_key]
        role = (role_map or {r: r for r in ROLES}).get(raw_role) if isinstance(raw_role, str) else None
        if role is None:
            problems.append(Problem("error", "unknown_role", (row,), f"unknown role {raw_role!r}",
                                    _role_fix(raw_role, role_map), field=f"{where}.{role_key}"))
            return None
        if content_key not in message:
            problems.append(Problem("error", "missing_content", (row,), f"message has no {content_key!r}",
                                    f"add {content_key!r} with the message text", field=where))
            return None
        content = _text(message[content_key], row, f"{where}.{content_key}", problems)
        if content is None:
            return None
        out.append({"role": role, "content": content})
    return out


def _role_fix(raw_role: Any, role_map: dict[str, str] | None) -> str:
    allowed = list(role_map or ROLES)
    if isinstance(raw_role, str):
        hint = ROLE_HINTS.get(raw_role.lower()) if role_map is None else None
        close = difflib.get_close_matches(raw_role.lower(), allowed, n=1)
        if hint or close:
            return f"use {hint or close[0]!r}"
    return f"use one of {', '.join(allowed)}"


def _messages(value: dict, row: int, problems: list[Problem]) -> list[dict[str, str]] | None:
    if "messages" not in value:
        _missing(row, "messages", "messages", problems)
        return None
    return _chat(value["messages"], row, problems, "messages")


def _sharegpt(value: dict, row: int, problems: list[Problem]) -> list[dict[str, str]] | None:
    if "conversations" not in value:
        _missing(row, "conversations", "sharegpt", problems)
        return None
    chat = _chat(value["conversations"], row, problems, "conversations", "from", "value", SHAREGPT_ROLES)
    if chat is not None and isinstance(value.get("system"), str) and value["system"].strip():
        chat.insert(0, {"role": "system", "content": value["system"]})
    return chat


def _alpaca(value: dict, row: int, problems: list[Problem]) -> list[dict[str, str]] | None:
    for key in ("instruction", "output"):
        if key not in value:
            _missing(row, key, "alpaca", problems)
            return None
    instruction = _text(value["instruction"], row, "instruction", problems)
    extra = _text(value.get("input", ""), row, "input", problems, required=False)
    output = _text(value["output"], row, "output", problems)
    if instruction is None or extra is None or output is None:
        return None
    user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    chat = [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    if isinstance(value.get("system"), str) and value["system"].strip():
        chat.insert(0, {"role": "system", "content": value["system"]})
    return chat


def _prompt_completion(value: dict, row: int, problems: list[Problem]) -> list[dict[str, str]] | None:
    for key in ("prompt", "completion"):
        if key not in value:
            _missing(row, key, "prompt_completion", problems)
            return None
    prompt, completion = value["prompt"], value["completion"]
    if isinstance(prompt, list) and isinstance(completion, list):
        head = _chat(prompt, row, problems, "prompt")
        tail = _chat(completion, row, problems, "completion")
        return None if head is None or tail is None else head + tail
    prompt_text = _text(prompt, row, "prompt", problems)
    completion_text = _text(completion, row, "completion", problems)
    if prompt_text is None or completion_text is None:
        return None
    return [{"role": "user", "content": prompt_text}, {"role": "assistant", "content": completion_text}]


def _plain_text(value: dict, row: int, problems: list[Problem]) -> list[dict[str, str]] | None:
    if "text" not in value:
        _missing(row, "text", "text", problems)
        return None
    text = _text(value["text"], row, "text", problems)
    return None if text is None else [{"role": "assistant", "content": text}]


_CONVERTERS: dict[str, Callable[[dict, int, list[Problem]], list[dict[str, str]] | None]] = {
    "messages": _messages,
    "sharegpt": _sharegpt,
    "alpaca": _alpaca,
    "prompt_completion": _prompt_completion,
    "text": _plain_text,
}
