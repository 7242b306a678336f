"""The typed records a run folder holds: its settings, its data manifest, its evaluation summaries and history.

Each record knows its JSON form (``to_dict``/``from_dict``), and nothing outside ``runs/`` spells
those keys. ``from_dict`` reads what 0.1 wrote, so a run saved by an earlier version still opens;
a field added later gets a default there. It checks every field it hands out (Malformed names the
field), so a file edited into another shape makes the run damaged, not a reader crash.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, ClassVar, Mapping

from .damage import LIST, NUMBER, OBJECT, TEXT, WHOLE, check, whole_file
from .damage import field as checked

FINE_TUNED = "fine-tuned"
"""The system name under which evaluation results store the run's own (adapter) scores."""


@dataclass(frozen=True)
class RunSettings:
    """How a run was set up: ``config.json``."""

    train: Mapping[str, Any]
    """Every TrainConfig field as saved (``engine.TrainConfig.from_dict`` reads it back)."""
    preset: str
    backend: str
    """The backend that ran it and why (``hf: no CUDA GPU, ...``)."""
    model_path: str
    """The local folder the base weights were loaded from."""
    length: str = ""
    """How the training length was chosen ("" for runs saved before it was recorded)."""
    device: str = ""
    """Where it trained (``models.gpus.kernel_device``: "T4", "CPU, 2 cores"); "" for older runs."""

    @property
    def model(self) -> str:
        """The model spec as the user gave it (alias, folder, .gguf or hub id)."""
        return str(self.train["model"])

    @property
    def quant(self) -> str:
        return str(self.train.get("quant", "none"))

    @property
    def backend_name(self) -> str:
        """The name of the backend that ran it (``hf``, ``unsloth``; ``?`` when not recorded)."""
        return self.backend.split(":", 1)[0].strip()

    def to_dict(self) -> dict[str, Any]:
        return {"train": dict(self.train), "preset": self.preset, "backend": self.backend,
                "model_path": self.model_path, "length": self.length, "device": self.device}

    @classmethod
    def from_dict(cls, saved: Any) -> "RunSettings":
        saved = whole_file(saved)
        train = checked(saved, "train", OBJECT, required=True)
        model = check(train.get("model"), TEXT, "train.model")
        checked(train, "steps", WHOLE)
        checked(train, "epochs", NUMBER)
        return cls(dict(train), checked(saved, "preset", TEXT) or "?", checked(saved, "backend", TEXT) or "?",
                   checked(saved, "model_path", TEXT) or model, checked(saved, "length", TEXT) or "",
                   checked(saved, "device", TEXT) or "")


@dataclass(frozen=True)
class DataManifest:
    """What a run was trained on: ``data.json``, the summary of its copy of the data."""

    name: str
    version: str
    """Content hash of the normalised rows and their split."""
    format: str
    split: str
    """The test fraction (``0.1``) or ``test file``."""
    seed: int
    model: str
    """The model whose chat template counted the tokens."""
    max_length: int
    train_rows: int
    test_rows: int
    train_tokens: int
    """Tokens per epoch of the training split."""
    mean_tokens: float
    max_tokens: int
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "format": self.format, "split": self.split,
                "seed": self.seed, "model": self.model, "max_length": self.max_length,
                "rows": {"train": self.train_rows, "test": self.test_rows},
                "tokens": {"train_per_epoch": self.train_tokens, "mean": self.mean_tokens, "max": self.max_tokens},
                "warnings": list(self.warnings)}

    @classmethod
    def from_dict(cls, saved: Any) -> "DataManifest":
        saved = whole_file(saved)
        text = {key: checked(saved, key, TEXT, required=True) for key in ("name", "version", "format", "split", "model")}
        rows, tokens = (checked(saved, key, OBJECT) or {} for key in ("rows", "tokens"))

        def whole(part: Mapping[str, Any], key: str, what: str) -> int:
            return check(part.get(key, 0), WHOLE, what)

        warnings = checked(saved, "warnings", LIST) or []
        return cls(text["name"], text["version"], text["format"], text["split"],
                   checked(saved, "seed", WHOLE, required=True), text["model"],
                   checked(saved, "max_length", WHOLE, required=True), whole(rows, "train", "rows.train"),
                   whole(rows, "test", "rows.test"), whole(tokens, "train_per_epoch", "tokens.train_per_epoch"),
                   float(check(tokens.get("mean", 0.0), NUMBER, "tokens.mean")), whole(tokens, "max", "tokens.max"),
                   tuple(check(w, TEXT, "a warning") for w in warnings))


@dataclass(frozen=True)
class KeptAdapter:
    """Which adapter a run keeps as ``adapter/``: the one of the best validation score, and its score."""

    step: int
    metric: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "metric": self.metric, "score": self.score}

    @classmethod
    def from_dict(cls, saved: Any) -> "KeptAdapter":
        saved = whole_file(saved)
        return cls(checked(saved, "step", WHOLE, required=True), checked(saved, "metric", TEXT, required=True),
                   float(checked(saved, "score", NUMBER, required=True)))


@dataclass(frozen=True)
class SystemResult:
    """One system's mean scores and costs in a saved evaluation."""

    scores: Mapping[str, float]
    prompt_tokens: float
    latency_s: float
    tokens_per_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"scores": dict(self.scores), "prompt_tokens": self.prompt_tokens, "latency_s": self.latency_s,
                "tokens_per_s": self.tokens_per_s}

    @classmethod
    def from_dict(cls, saved: Mapping[str, Any]) -> "SystemResult":
        scores = {k: float(v) for k, v in dict(saved.get("scores") or {}).items() if isinstance(v, (int, float))}
        return cls(scores, float(saved.get("prompt_tokens", 0.0)), float(saved.get("latency_s", 0.0)),
                   float(saved.get("tokens_per_s", 0.0)))


def utc_now() -> str:
    """When an evaluation completed, as records keep it: ISO 8601 in UTC, to the second."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _systems(saved: Any) -> dict[str, SystemResult]:
    return {str(name): SystemResult.from_dict(s) for name, s in dict(saved).items() if isinstance(s, Mapping)}


def _accuracies(saved: Any) -> dict[str, float]:
    """Per system, a preference accuracy; what is not a number is left out."""
    return {str(name): float(v) for name, v in dict(saved or {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


@dataclass(frozen=True)
class EvalSummary:
    """The scores and verdict of one saved evaluation (``eval/<data-version>.json`` without the answers)."""

    KEYS: ClassVar[tuple[str, ...]] = ("data_version", "metrics", "systems", "verdict", "date", "adapter_hash",
                                       "preference")
    """Its keys in the saved file, beside the evaluation's own details."""

    data_version: str
    metrics: tuple[str, ...]
    systems: Mapping[str, SystemResult]
    verdict: str | None
    updated: float = field(default=0.0, compare=False)
    """When it was saved (the file's mtime)."""
    date: str = ""
    """When it completed (``utc_now``; "" in files saved before it was recorded)."""
    adapter_hash: str = ""
    """The content hash of the adapter it scored (``Run.adapter_hash``; "" before it was recorded)."""
    preference: Mapping[str, float] = field(default_factory=dict)
    """Per system, the share of held-out preference pairs it ranks chosen above rejected (empty: the data
    had no pairs); kept only when there are some, so other evaluations are saved as before."""

    def scores(self, system: str = FINE_TUNED) -> dict[str, float]:
        found = self.systems.get(system)
        return dict(found.scores) if found else {}

    def to_dict(self) -> dict[str, Any]:
        return {"data_version": self.data_version, "metrics": list(self.metrics),
                "systems": {name: s.to_dict() for name, s in self.systems.items()}, "verdict": self.verdict,
                "date": self.date, "adapter_hash": self.adapter_hash,
                **({"preference": dict(self.preference)} if self.preference else {})}

    @classmethod
    def from_dict(cls, saved: Mapping[str, Any], updated: float = 0.0) -> "EvalSummary":
        systems = _systems(saved["systems"])
        metrics = tuple(saved.get("metrics") or next((tuple(s.scores) for s in systems.values()), ()))
        return cls(str(saved["data_version"]), metrics, systems, saved.get("verdict"), updated,
                   str(saved.get("date") or ""), str(saved.get("adapter_hash") or ""),
                   _accuracies(saved.get("preference")))


@dataclass(frozen=True)
class EvalRecord:
    """One completed evaluation in a run's history, which keeps every one (a summary of the same data
    version replaces the one before): when, on which data, with which adapter, and its scores."""

    date: str
    """ISO 8601 in UTC, to the second."""
    data: str
    """The data set's name ("" when not known)."""
    data_version: str
    adapter_hash: str
    """The content hash of the adapter's weights: the same for a copy, another for a retrained adapter."""
    metrics: tuple[str, ...]
    systems: Mapping[str, SystemResult]
    verdict: str | None
    preference: Mapping[str, float] = field(default_factory=dict)
    """Per system, its preference accuracy on held-out pairs (EvalSummary.preference)."""

    @classmethod
    def of(cls, summary: EvalSummary, data: str) -> "EvalRecord":
        return cls(summary.date, data, summary.data_version, summary.adapter_hash, summary.metrics, summary.systems,
                   summary.verdict, summary.preference)

    def score(self, metric: str, system: str = FINE_TUNED) -> float | None:
        """The system's mean score on ``metric``; None when that system or metric was not scored."""
        found = self.systems.get(system)
        return found.scores.get(metric) if found else None

    def to_dict(self) -> dict[str, Any]:
        return {"date": self.date, "data": self.data, "data_version": self.data_version,
                "adapter_hash": self.adapter_hash, "metrics": list(self.metrics),
                "systems": {name: s.to_dict() for name, s in self.systems.items()}, "verdict": self.verdict,
                **({"preference": dict(self.preference)} if self.preference else {})}

    @classmethod
    def from_dict(cls, saved: Any) -> "EvalRecord":
        """Malformed (or KeyError, TypeError...) for a line in another shape: the history skips it."""
        saved = whole_file(saved)
        text = {key: checked(saved, key, TEXT, required=True) for key in ("date", "data_version", "adapter_hash")}
        systems = _systems(checked(saved, "systems", OBJECT, required=True))
        metrics = tuple(check(m, TEXT, "a metric") for m in checked(saved, "metrics", LIST) or ())
        verdict = checked(saved, "verdict", TEXT)
        return cls(text["date"], checked(saved, "data", TEXT) or "", text["data_version"], text["adapter_hash"],
                   metrics or next((tuple(s.scores) for s in systems.values()), ()), systems, verdict,
                   _accuracies(checked(saved, "preference", OBJECT)))
