"""Small builders shared by the data tests."""

from __future__ import annotations

import json


def chat(i: int, system: str | None = "You sort support tickets.") -> dict:
    messages = [{"role": "user", "content": f"Ticket {i}: the printer on floor {i % 7} is broken, case {i * 37}."},
                {"role": "assistant", "content": json.dumps({"team": "it", "priority": "high" if i % 2 else "low", "case": i})}]
    if system:
        messages.insert(0, {"role": "system", "content": system})
    return {"messages": messages}


def jsonl(rows: list) -> str:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n"


def good_rows(n: int = 60) -> list[dict]:
    return [chat(i) for i in range(n)]
