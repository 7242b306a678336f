"""Checks across rows: turn order, duplicates, train/test leakage, too few examples."""

from __future__ import annotations

import string

from .formats import Example
from .problems import Problem

MIN_ROWS = 10
RECOMMENDED_ROWS = 50
_PUNCTUATION = str.maketrans(string.punctuation, " " * len(string.punctuation))


def check_turns(examples: list[Example]) -> tuple[list[Example], list[Problem]]:
    """Keep the examples whose turns a trainer can use; name the rest."""
    kept: list[Example] = []
    problems: list[Problem] = []
    repeated: list[int] = []
    for ex in examples:
        if ex.is_text:
            kept.append(ex)
            continue
        roles = [m["role"] for m in ex.messages]
        if "system" in roles[1:]:
            problems.append(Problem("error", "system_not_first", (ex.row,),
                                    f"system message at position {roles.index('system', 1) + 1}, not first",
                                    "move the system message to the start of the conversation", field="role"))
        elif roles[-1] != "assistant":
            problems.append(Problem("error", "no_final_assistant", (ex.row,),
                                    f"the last message is from {roles[-1]!r}, so there is no answer to learn",
                                    "end the conversation with the assistant's answer", field="role"))
        elif "user" not in roles:
            problems.append(Problem("error", "no_user_turn", (ex.row,), "there is no user message",
                                    "add the user's request before the answer, or use the text format for plain text",
                                    field="role"))
        else:
            if any(a == b for a, b in zip(roles, roles[1:])):
                repeated.append(ex.row)
            kept.append(ex)
    if repeated:
        problems.append(Problem("warning", "repeated_role", tuple(repeated),
                                "two messages in a row from the same role",
                                "merge them; many chat templates expect user and assistant to alternate",
                                field="role"))
    return kept, problems


def exact_key(ex: Example) -> tuple[str, ...]:
    """Every message, and a pair's rejected answer: one prompt with two different rejected answers is two pairs."""
    return tuple(m["role"] + "\x00" + m["content"] for m in ex.messages) + ((ex.rejected,) if ex.rejected else ())


def near_key(ex: Example) -> str:
    """The text with case, spacing and punctuation removed: what near-duplicates share."""
    texts = [m["content"] for m in ex.messages] + ([ex.rejected] if ex.rejected else [])
    return " ".join("\x00".join(texts).lower().translate(_PUNCTUATION).split())


def check_duplicates(examples: list[Example], keys: list[str]) -> list[Problem]:
    """Exact and near duplicates within one split, each naming the row it repeats."""
    exact_first: dict[tuple[str, ...], int] = {}
    near_first: dict[str, int] = {}
    exact: list[Problem] = []
    near: list[Problem] = []
    for ex, key in zip(examples, keys):
        ek = exact_key(ex)
        first = exact_first.setdefault(ek, ex.row)
        if first != ex.row:
            exact.append(Problem("warning", "duplicate", (ex.row,), f"exact duplicate of row {first}",
                                 "drop the copy: duplicates over-weight one example and can leak into the test split"))
            continue
        first = near_first.setdefault(key, ex.row)
        if first != ex.row:
            near.append(Problem("warning", "near_duplicate", (ex.row,),
                                f"near duplicate of row {first} (differs only in case, spacing or punctuation)",
                                "keep one of the two unless the difference matters"))
    return exact + near


def check_leakage(train: list[Example], train_keys: list[str],
                  test: list[Example], test_keys: list[str]) -> list[Problem]:
    """Test rows that also appear in train would overstate every score."""
    seen = dict(zip(train_keys, (ex.row for ex in train)))
    return [
        Problem("error", "leakage", (ex.row,), f"test row also appears in the training data (row {seen[key]})",
                "remove it from the test set or from the training data", field="test")
        for ex, key in zip(test, test_keys) if key in seen
    ]


def check_count(train_rows: int, unit: str = "examples") -> list[Problem]:
    if train_rows < MIN_ROWS:
        return [Problem("error", "too_few", (), f"only {train_rows} training {unit}",
                        f"provide at least {MIN_ROWS} (OpenAI's minimum; {RECOMMENDED_ROWS}-100 is where gains show)")]
    if train_rows < RECOMMENDED_ROWS:
        return [Problem("warning", "few", (), f"only {train_rows} training {unit}",
                        f"{RECOMMENDED_ROWS}-100 well-made {unit} is where fine-tuning usually starts to help")]
    return []
