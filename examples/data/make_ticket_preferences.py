"""Writes ticket_preferences.jsonl: ticket triage as preference pairs in OpenAI's layout (deterministic).

Each pair prefers the concise, correct JSON answer. The rejected answer is, in a third of the pairs, verbose
(prose around the JSON, or prose instead of it) and otherwise wrong (a wrong team or priority in the same
JSON). The verbose answers are not always longer, so "the shorter answer wins" is right on fewer than
half of the pairs; and a wrong answer has the chosen one's shape and length, so only the triage itself
tells them apart. Two wrong pairs to one verbose: even the base model ranks the JSON above prose (by
mean log-probability per token), so the wrong answers are where preference tuning has work to do. The
tickets are those of make_tickets.py with a shorter system prompt, since a DPO step reads the prompt
twice (once with each answer). The package ships a copy (``ft.example_data("ticket_preferences")``).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from make_tickets import ISSUES, PRODUCTS, URGENCY

SYSTEM = "Triage the ticket. Reply with JSON only: team (billing, it, shipping or account), priority " \
         "(low, medium or high), product."
VERBOSE = [
    "Sure! Here is the triage for this ticket:\n{answer}\nLet me know if you need anything else.",
    "This ticket is about a {product}, so the {team} team should handle it with {priority} priority.",
    "Based on the ticket, I would classify it as follows: {answer} I hope this helps!",
    "The customer has a problem with their {product}. Team: {team}. Priority: {priority}.",
]


def triage(team: str, priority: str, product: str) -> str:
    return json.dumps({"team": team, "priority": priority, "product": product})


def rejected(rng: random.Random, team: str, priority: str, product: str, verbose: bool) -> str:
    """A verbose answer with the right triage, or the JSON with a wrong team or priority."""
    if verbose:
        return rng.choice(VERBOSE).format(answer=triage(team, priority, product), team=team, priority=priority,
                                          product=product)
    if rng.random() < 0.5:
        team = rng.choice([t for t in ISSUES if t != team])
    else:
        priority = rng.choice([p for p in URGENCY if p != priority])
    return triage(team, priority, product)


def pair(rng: random.Random, verbose: bool) -> dict:
    team = rng.choice(list(ISSUES))
    priority = rng.choice(list(URGENCY))
    product = rng.choice(PRODUCTS)
    text = rng.choice(ISSUES[team]).format(p=product)
    user = f"{text[0].upper()}{text[1:]}, {rng.choice(URGENCY[priority])}. Order #{rng.randint(10000, 99999)}."
    return {"input": {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]},
            "preferred_output": [{"role": "assistant", "content": triage(team, priority, product)}],
            "non_preferred_output": [{"role": "assistant",
                                      "content": rejected(rng, team, priority, product, verbose)}]}


def main(rows: int = 160, seed: int = 21, out: Path = Path(__file__).with_name("ticket_preferences.jsonl")) -> None:
    rng = random.Random(seed)
    out.write_text("".join(json.dumps(pair(rng, verbose=i % 3 == 0)) + "\n" for i in range(rows)))


if __name__ == "__main__":
    main()
