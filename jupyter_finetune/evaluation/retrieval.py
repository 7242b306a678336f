"""Retrieval baselines: is fine-tuning needed, or do the right examples or documents in the prompt do?

Two systems ``%ft_eval`` compares with the fine-tuned model, both ranked by BM25 (word overlap weighted by
rarity; no embedding model to download, and answers that hinge on exact names and numbers are where it is
strong): ``retrieval`` gives the base model the training examples most like each held-out input as shots,
``rag`` gives it the passages of ``--docs`` most like the question.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Collection, Sequence

from ..data.documents import Documents, Passage
from ..data.formats import Example
from ..errors import InvalidValue

Messages = list[dict[str, str]]
RAG_INSTRUCTION = "Answer using these passages where they help."


class Bm25:
    """A BM25 index (``bm25s``, English stopwords, no stemmer) over ``texts``, addressed by position."""

    def __init__(self, texts: Sequence[str]) -> None:
        import bm25s

        tokens = bm25s.tokenize(list(texts), stopwords="en", return_ids=False, show_progress=False)
        self._index: bm25s.BM25 | None = None
        if any(t for doc in tokens for t in doc):  # bm25s cannot index a corpus without a single word
            self._index = bm25s.BM25()
            self._index.index(tokens, show_progress=False)

    def top(self, query: str, k: int, exclude: Collection[int] = ()) -> list[tuple[int, float]]:
        """The best ``k`` (index, score) with a score above 0, best first, ties to the lower index, none in
        ``exclude``; fewer when fewer texts share a word with ``query``."""
        import bm25s
        import numpy as np

        if self._index is None or k <= 0:
            return []
        vocab = self._index.vocab_dict
        words = [t for t in bm25s.tokenize([query], stopwords="en", return_ids=False, show_progress=False)[0]
                 if t and t in vocab]
        if not words:
            return []
        scores = self._index.get_scores(words)
        found = []
        for i in np.argsort(-scores, kind="stable"):  # stable: equal scores keep the lower index first
            if scores[i] <= 0 or len(found) == k:
                break
            if int(i) not in exclude:
                found.append((int(i), float(scores[i])))
        return found


def prompt_text(example: Example) -> str:
    """What an example asks: its prompt's (``messages[:-1]``) turns other than the system prompt."""
    return "\n".join(m["content"] for m in example.messages[:-1] if m["role"] != "system")


def nearest_examples(train: list[Example], rows: list[Example], k: int, seed: int = 0) -> list[list[Example]]:
    """For each held-out row, ``k`` training examples as shots, the one whose prompt is most like the row's last
    (nearest the question: what works best for small models).

    Never the row itself: a training example with the row's number or with the same prompt (spacing and case
    aside) is left out. When fewer than ``k`` share a word with the row, the rest are filled in a fixed order
    drawn with ``seed`` and come first, so every row gets ``k`` shots (fewer only when leaving duplicates
    out leaves fewer than ``k`` training examples).
    """
    if k < 0:
        raise InvalidValue(f"--shots must be 0 or more (got {k})")
    if k > len(train):
        raise InvalidValue(f"--shots {k} but the training split has only {len(train)} rows")
    texts = [prompt_text(e) for e in train]
    index = Bm25(texts)
    by_row: dict[int, set[int]] = defaultdict(set)
    by_text: dict[str, set[int]] = defaultdict(set)
    for i, (example, text) in enumerate(zip(train, texts)):
        by_row[example.row].add(i)
        by_text[_same(text)].add(i)
    fallback = random.Random(seed).sample(range(len(train)), len(train))
    shots = []
    for row in rows:
        query = prompt_text(row)
        held_out = by_row.get(row.row, set()) | by_text.get(_same(query), set())
        found = [i for i, _ in index.top(query, k, exclude=held_out)]
        fill = [i for i in fallback if i not in held_out and i not in found][:k - len(found)]
        shots.append([train[i] for i in [*fill, *reversed(found)]])
    return shots


def _same(text: str) -> str:
    """The text as compared for duplicates: case and spacing do not make a held-out prompt new."""
    return " ".join(text.casefold().split())


def retrieve_passages(docs: Documents, rows: list[Example], k: int) -> list[list[Passage]]:
    """For each row, the ``k`` passages most like its last user turn, best first (fewer when fewer match)."""
    if k < 0:
        raise InvalidValue(f"the number of passages must be 0 or more (got {k})")
    index = Bm25([p.text for p in docs.passages])
    return [[docs.passages[i] for i, _ in index.top(_question(row.messages[:-1]), k)] for row in rows]


def _question(prompt: Messages) -> str:
    return next((m["content"] for m in reversed(prompt) if m["role"] == "user"), "")


def rag_prompt(prompt: Messages, passages: Sequence[Passage]) -> Messages:
    """``prompt`` with ``passages`` (in the order given, each after its id) before the question in its last
    user turn; the system prompt and earlier turns unchanged."""
    asked = [dict(m) for m in prompt]
    if not passages:
        return asked
    last = next((i for i in range(len(asked) - 1, -1, -1) if asked[i]["role"] == "user"), None)
    if last is None:
        raise ValueError("a prompt without a user turn has no question to add passages to")
    quoted = "\n\n".join(f"[{p.id}] {p.text}" for p in passages)
    asked[last]["content"] = f"{RAG_INSTRUCTION}\n\n{quoted}\n\nQuestion: {asked[last]['content']}"
    return asked
