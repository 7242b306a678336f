"""Writes extract.jsonl, rewrite.jsonl and facts.jsonl: three small benchmark tasks (deterministic).

bench_defaults.py fine-tunes SmolLM2-135M-Instruct on each to compare default settings with a grid,
so every task is rule-based (learnable from ~120 rows), short (training time is per token) and not
solvable zero-shot: a fixed answer format, fixed normalisations, or facts only this file contains.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

ROWS = 150
DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def chat(system: str, user: str, answer: str) -> dict:
    return {"messages": [{"role": "system", "content": system}, {"role": "user", "content": user},
                         {"role": "assistant", "content": answer}]}


# --- extract: a booking note -> JSON with four normalised fields -------------------------------------

EXTRACT_SYSTEM = ('Extract the booking. Reply with JSON only: "name", "day" (weekday, lower case), '
                  '"city" and "guests" (a number).')
GUEST_NAMES = ["Marta", "Jonas", "Priya", "Tomasz", "Aiko", "Lucas", "Fatima", "Oskar", "Elena", "Kwame",
               "Ines", "Ravi", "Sofie", "Mateo", "Hana", "Dmitri", "Leila", "Bruno", "Yuki", "Nadia"]
CITIES = ["Lisbon", "Oslo", "Krakow", "Porto", "Lyon", "Ghent", "Bergen", "Turin", "Seville", "Leipzig",
          "Dublin", "Malmo", "Graz", "Utrecht", "Bilbao", "Tallinn"]
# "{d}" is the weekday as written: full, or a short form ("Tue", "Thurs") the answer must expand.
DAY_PHRASES = ["on {d}", "next {d}", "this {d}", "this coming {d}", "{d} evening", "on {d} night"]
SHORT_DAYS = {"monday": ["Mon"], "tuesday": ["Tue", "Tues"], "wednesday": ["Wed"], "thursday": ["Thu", "Thurs"],
              "friday": ["Fri"], "saturday": ["Sat"], "sunday": ["Sun"]}
TIMES = ["", "", " at 7pm", " around 8:30", " at 6", " for 9pm"]  # numbers that are not the guest count
EXTRACT_TEMPLATES = [
    "Hi, this is {name}. Could I book a table for {n} in {city} {day}{time}?",
    "Table for {n} at the {city} branch, {day}{time}. Name: {name}.",
    "{name} here - we are {people} and want to come to {city} {day}.",
    "Please reserve {day}{time} in {city}: {n} guests, under {name}.",
    "Booking request from {name}: {city}, {people}, {day}.",
    "Can you fit {people} in {city} {day}{time}? It's for {name}.",
    "{Day}{time}, {city}, party of {n}. Booked by {name}, thanks!",
    "Hello! {name} would like a table in {city} for {people} {day}.",
    "We'd like to visit your {city} place {day}, {people} in total. The name is {name}.",
    "Reservation: {name}, {n} guests, {day}, {city} location{time}.",
]


def extract_row(rng: random.Random) -> dict:
    name, city, day, guests = rng.choice(GUEST_NAMES), rng.choice(CITIES), rng.choice(DAYS), rng.randint(2, 9)
    written = day.capitalize() if rng.random() < 0.6 else rng.choice(SHORT_DAYS[day])
    day_phrase = rng.choice(DAY_PHRASES).format(d=written)
    n = str(guests) if rng.random() < 0.5 else NUMBER_WORDS[guests]
    user = rng.choice(EXTRACT_TEMPLATES).format(
        name=name, city=city, day=day_phrase, Day=day_phrase[0].upper() + day_phrase[1:], n=n,
        people=f"{n} people", time=rng.choice(TIMES))
    answer = json.dumps({"name": name, "day": day, "city": city, "guests": guests})
    return chat(EXTRACT_SYSTEM, user, answer)


# --- rewrite: a workplace message -> "[DAY] TEAM: verb -> object (owner: Name)" ----------------------

REWRITE_SYSTEM = "Rewrite the message as a one-line status update."
TEAMS = {"marketing": "MKT", "engineering": "ENG", "finance": "FIN", "design": "DES", "legal": "LEG",
         "support": "SUP", "sales": "SLS", "operations": "OPS"}
# canonical verb -> surface forms as (base, past participle); the answer always uses the canonical verb
ACTIONS = {"review": [("review", "reviewed"), ("look over", "looked over"), ("go through", "gone through")],
           "fix": [("fix", "fixed"), ("repair", "repaired")],
           "ship": [("ship", "shipped"), ("release", "released")],
           "update": [("update", "updated"), ("refresh", "refreshed")],
           "cancel": [("cancel", "cancelled"), ("call off", "called off")],
           "draft": [("draft", "drafted"), ("write up", "written up")],
           "test": [("test", "tested"), ("try out", "tried out")]}
OBJECTS = ["landing page", "budget sheet", "client contract", "release notes", "onboarding guide", "pricing page",
           "weekly report", "sign-up form", "vendor invoice", "test plan", "style guide", "demo video"]
OWNERS = ["Priya", "Tom", "Grace", "Omar", "Lena", "Diego", "Mei", "Sam", "Anya", "Felix", "Rosa", "Kenji",
          "Zara", "Hugo", "Ivy", "Nils"]
WORKDAYS = DAYS[:5]
REWRITE_TEMPLATES = [
    "{name} from {team} will {verb} the {obj} on {Day}.",
    "On {Day}, {name} on the {team} team is going to {verb} the {obj}.",
    "Heads up: {name} in {team} plans to {verb} the {obj} this {Day}.",
    "{Day} plan: {name} ({team}) will {verb} the {obj}.",
    "The {obj} will be {done} by {name} from {team} on {Day}.",
    "Quick note that {name} from the {team} team is going to {verb} the {obj} {Day}.",
    "Please note the {team} team's {name} will {verb} the {obj} by {Day}.",
    "By {Day} the {obj} should be {done}; {name} in {team} owns it.",
    "{name} ({team}) has agreed to {verb} the {obj} before {Day}.",
]


def rewrite_row(rng: random.Random) -> dict:
    team, action, obj = rng.choice(list(TEAMS)), rng.choice(list(ACTIONS)), rng.choice(OBJECTS)
    name, day = rng.choice(OWNERS), rng.choice(WORKDAYS)
    verb, done = rng.choice(ACTIONS[action])
    user = rng.choice(REWRITE_TEMPLATES).format(name=name, team=team, verb=verb, done=done, obj=obj,
                                                Day=day.capitalize())
    answer = f"[{day[:3].upper()}] {TEAMS[team]}: {action} -> {obj} (owner: {name})"
    return chat(REWRITE_SYSTEM, user, answer)


# --- facts: questions about an invented town's shops, each fact asked in 3 or 4 phrasings -----------

FACTS_SYSTEM = "Answer in a few words questions about the shops of the town of Brindlemoor."
SHOPS = ["Bramblewick Bakery", "Thistledown Books", "Copperfen Hardware", "Larkspire Florist", "Mossgrove Tailors",
         "Quillbury Pharmacy", "Fennick Fishmongers", "Oakhollow Cafe", "Saltmere Bicycles", "Glimmerby Toys",
         "Harrowdene Butchers", "Wrenfold Music", "Pebblewick Pottery", "Ashcombe Opticians", "Tumbleford Cheese",
         "Nettlecroft Barbers", "Violetmoor Tea House", "Cobbleridge Shoes", "Dunmarrow Launderette",
         "Kestrelby Stationery"]
FIRST_NAMES = ["Orla", "Tobias", "Wilhelmina", "Caspian", "Imogen", "Barnaby", "Esme", "Ludovic", "Perpetua",
               "Ansel", "Marigold", "Cyprian", "Rosalind", "Thaddeus", "Clementine", "Evander", "Honora",
               "Lysander", "Philippa", "Osric"]
SURNAMES = ["Fennimore", "Wrenhart", "Quillon", "Ashby-Vane", "Dorrow", "Pellinger", "Mirefield", "Crane-Lowry",
            "Tansley", "Holloway-Pike", "Grisdale", "Ormsby", "Vantreece", "Coldharbour", "Bexley-Moor",
            "Sallowes", "Penhallow", "Drummond-Kay", "Ellerby", "Marchbank"]
STREETS = ["Marlow Street", "Tanners Lane", "Gullet Row", "Wickham Road", "Saffron Street", "Heron Lane",
           "Candlewick Row", "Old Forge Road", "Lantern Street", "Pilgrim Lane", "Bellweather Road",
           "Juniper Row", "Millrace Street", "Ferrier Lane", "Cinder Road", "Starling Street", "Quarry Row",
           "Chandler Lane", "Orchard Road", "Weaver Street"]
QUESTIONS = {"owner": ["Who owns {s}?", "Who runs {s} in Brindlemoor?", "What is the name of the owner of {s}?",
                       "Whose shop is {s}?"],
             "street": ["Which street is {s} on?", "Where in Brindlemoor is {s}?", "On what street can I find {s}?",
                        "{s} is on which street?"]}
SHORT_FACTS = 10  # facts asked in 3 phrasings instead of 4, so that the file has exactly ROWS rows


def facts_rows(rng: random.Random) -> list[dict]:
    owners = [f"{f} {s}" for f, s in zip(rng.sample(FIRST_NAMES, len(SHOPS)), rng.sample(SURNAMES, len(SHOPS)))]
    streets = rng.sample(STREETS, len(SHOPS))
    facts = [(shop, "owner", owner) for shop, owner in zip(SHOPS, owners)]
    facts += [(shop, "street", street) for shop, street in zip(SHOPS, streets)]
    rng.shuffle(facts)
    rows = []
    for i, (shop, attribute, answer) in enumerate(facts):
        asked = rng.sample(QUESTIONS[attribute], 3 if i < SHORT_FACTS else 4)
        rows += [chat(FACTS_SYSTEM, question.format(s=shop), answer) for question in asked]
    rng.shuffle(rows)
    return rows


def write(name: str, rows: list[dict]) -> None:
    assert len(rows) == ROWS, (name, len(rows))
    Path(__file__).with_name(f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def repeat(make: Callable[[random.Random], dict], rng: random.Random) -> list[dict]:
    return [make(rng) for _ in range(ROWS)]


def main(seed: int = 11) -> None:
    write("extract", repeat(extract_row, random.Random(seed)))
    write("rewrite", repeat(rewrite_row, random.Random(seed + 1)))
    write("facts", facts_rows(random.Random(seed + 2)))


if __name__ == "__main__":
    main()
