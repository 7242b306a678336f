"""Writes tickets.jsonl: support tickets triaged into a fixed JSON answer (deterministic).

A base model answers in prose or broken JSON; a short LoRA fine-tune learns the exact schema.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SYSTEM = ("You triage customer support tickets. Reply with JSON only, exactly these keys: "
          '"team" (billing, it, shipping or account), "priority" (low, medium or high) and "product".')
PRODUCTS = ["printer", "laptop", "router", "phone", "monitor", "headset", "keyboard", "tablet"]
ISSUES = {
    "billing": ["I was charged twice for my {p}", "the invoice for my {p} shows the wrong amount",
                "I need a refund for the {p} I returned", "my card was billed for a {p} I never ordered"],
    "it": ["my {p} will not turn on", "the {p} keeps disconnecting from the network",
           "the {p} crashes after the latest update", "the {p} screen flickers and goes black"],
    "shipping": ["my {p} has not arrived after two weeks", "the {p} arrived with a cracked case",
                 "the tracking number for my {p} does not work", "I received a {p} but ordered something else"],
    "account": ["I cannot log in to order a new {p}", "please reset my password, I need to register my {p}",
                "my account was locked while buying a {p}", "I want to change the email on my {p} warranty account"],
}
URGENCY = {"low": ["when you have time", "no rush", "just letting you know"],
           "medium": ["please look into it", "this is annoying", "can you help this week"],
           "high": ["this is urgent", "I need it fixed today", "our whole office is blocked"]}


def ticket(rng: random.Random) -> dict:
    team = rng.choice(list(ISSUES))
    priority = rng.choice(list(URGENCY))
    product = rng.choice(PRODUCTS)
    text = rng.choice(ISSUES[team]).format(p=product)
    user = f"{text[0].upper()}{text[1:]}, {rng.choice(URGENCY[priority])}. Order #{rng.randint(10000, 99999)}."
    answer = json.dumps({"team": team, "priority": priority, "product": product})
    return {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user},
                         {"role": "assistant", "content": answer}]}


def main(rows: int = 240, seed: int = 7) -> None:
    rng = random.Random(seed)
    out = Path(__file__).with_name("tickets.jsonl")
    out.write_text("".join(json.dumps(ticket(rng)) + "\n" for _ in range(rows)))


if __name__ == "__main__":
    main()
