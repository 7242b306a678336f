"""The systems %ft_eval puts side by side, and the prompt each one asks every held-out row with.

Prompting (the base model zero-shot, with fixed shots, or with the training rows most like the
question), RAG (the base model with passages from the user's documents), fine-tuning, and both.
Shots and neighbours come from the training split only; passages from ``--docs`` only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from ..data.documents import Documents
from ..data.formats import Example
from ..errors import InvalidValue
from ..runs import FINE_TUNED
from .fewshot import pick_shots, with_shots
from .retrieval import nearest_examples, rag_prompt, retrieve_passages

BASE, FEWSHOT, RETRIEVAL, RAG, TUNED_RAG = "base", "fewshot", "retrieval", "rag", "fine-tuned+rag"
SYSTEMS = (FINE_TUNED, BASE, FEWSHOT, RETRIEVAL, RAG, TUNED_RAG)
ADAPTED = frozenset({FINE_TUNED, TUNED_RAG})
"""The systems that answer with the adapter on; the others are the same weights with it off."""
WITH_DOCS = frozenset({RAG, TUNED_RAG})
APPROACH = {BASE: "prompting", FEWSHOT: "prompting", RETRIEVAL: "prompting", RAG: "RAG", FINE_TUNED: "fine-tuning",
            TUNED_RAG: "fine-tuning and RAG"}
"""What a user would adopt to get each system's answers."""

Messages = list[dict[str, str]]


def default_against(docs: bool) -> tuple[str, ...]:
    """Every prompting baseline, and RAG when there are documents to retrieve from."""
    return (BASE, FEWSHOT, RETRIEVAL, *((RAG,) if docs else ()))


def started_from(method: str, run: str) -> str:
    """The system that answers with the adapter a run started from (``--from RUN``), named by that run:
    ``"sft (tickets-1)"``. It is the only system whose name is not one of SYSTEMS."""
    return f"{method} ({run})"


def approach(system: str) -> str:
    """What a user would adopt to get ``system``'s answers (a starting run's adapter is fine-tuning too)."""
    return APPROACH.get(system, APPROACH[FINE_TUNED])


def adapted(system: str) -> bool:
    """Whether ``system`` answers with an adapter (its training counts in its cost)."""
    return system in ADAPTED or system not in SYSTEMS


def in_order(systems: Sequence[str]) -> list[str]:
    """The order tables show systems in: SYSTEMS', with a starting run's adapter after base (base | sft | dpo)."""
    started = [s for s in systems if s not in SYSTEMS]
    order = [*SYSTEMS[:2], *started, *SYSTEMS[2:]]
    return [s for s in order if s in systems]


def check_systems(systems: Sequence[str], docs: Documents | None) -> None:
    """Refuse an unknown name, or a RAG system without documents, before anything loads."""
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        raise InvalidValue(f"unknown system(s) {', '.join(unknown)}: compare with {', '.join(SYSTEMS[1:])}")
    needing = [s for s in systems if s in WITH_DOCS]
    if needing and docs is None:
        raise InvalidValue(f"--against {','.join(needing)} retrieves passages from your documents: give them with "
                           "--docs PATH (a folder of .md/.txt/.html/.pdf files, or a JSONL of passages)")


@dataclass(frozen=True)
class Prompts:
    """Each system's prompts for the held-out rows, and what they were built from."""

    plain: list[Messages]
    shot_rows: list[int] = field(default_factory=list)
    """Training rows in the fixed few-shot prompt."""
    neighbours: list[list[int]] = field(default_factory=list)
    """Per held-out row, the training rows retrieval put in its prompt (most similar last)."""
    citations: list[list[str]] = field(default_factory=list)
    """Per held-out row, the passages retrieved for it (best first), as ``file#chunk`` ids."""
    by_system: dict[str, list[Messages]] = field(default_factory=dict)

    def asked(self, system: str) -> list[Messages]:
        return self.by_system.get(system, self.plain)


def build_prompts(rows: list[Example], train: list[Example], systems: Sequence[str], *, shots: int, seed: int,
                  docs: Documents | None, passages: int) -> Prompts:
    """The prompts of ``systems``: retrieval takes ``shots`` neighbours, RAG ``passages`` passages per row."""
    plain = [ex.messages[:-1] for ex in rows]
    by_system: dict[str, list[Messages]] = {}
    shot_rows: list[int] = []
    neighbours: list[list[int]] = []
    citations: list[list[str]] = []
    if FEWSHOT in systems:
        fixed = pick_shots(train, shots, seed)
        shot_rows = [ex.row for ex in fixed]
        by_system[FEWSHOT] = [with_shots(p, fixed) for p in plain]
    if RETRIEVAL in systems:
        nearest = nearest_examples(train, rows, shots)
        neighbours = [[ex.row for ex in near] for near in nearest]
        by_system[RETRIEVAL] = [with_shots(p, near) for p, near in zip(plain, nearest)]
    if docs is not None and WITH_DOCS & set(systems):
        found = retrieve_passages(docs, rows, passages)
        citations = [[p.id for p in ps] for ps in found]
        # the best passage last, nearest the question, as retrieval's best shot is
        with_passages = [rag_prompt(p, ps[::-1]) for p, ps in zip(plain, found)]
        by_system.update({s: with_passages for s in systems if s in WITH_DOCS})
    return Prompts(plain, shot_rows, neighbours, citations, by_system)
