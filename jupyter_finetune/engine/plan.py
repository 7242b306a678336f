"""Before any GPU time: will these settings fit, how long will an epoch take, and what will it cost."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from html import escape
from typing import TYPE_CHECKING, Any

from ..data.estimate import openai_usd, price_table
from ..data.length import MOST_VALIDATION_ROWS, choose_length
from ..data.tokens import Lengths, TokenStats
from ..models.gpus import Gpu, GpuTable
from ..models.memory import (GIB, GPU_16BIT, PAIR_SEQUENCES, PREFERENCE_METHODS, MemoryBreakdown, ModelShape,
                             estimate_memory)
from ..models.speed import MFU, flops_per_token, gpu_compute, scaling_efficiency
from .config import STRATEGIES, TrainConfig, build_config, steps_per_epoch

if TYPE_CHECKING:
    from ..data import FtDataset

FIT_FRACTION = 0.95
"""A plan fits when its total is at most 95% of the GPU's memory: fragmentation needs the rest."""
DEFAULT_GPU = "T4"
"""The GPU recommended for when none is named: the free Colab and Kaggle one."""
BATCH_SIZES = (1, 2, 4, 8, 16)
PARALLEL_WORTH_SECONDS = 5 * 60
"""Several GPUs are recommended only for a training that takes at least this long on one. Each run on
several starts fresh worker processes (Python, torch, the model loaded in each): about a minute, while
two GPUs save at most 40-45% of the time (at 80-90% scaling efficiency), so a shorter run gains little."""
SHORTEST_LENGTH = 128
METHOD_NOTES = {
    "dpo": f"DPO: each example is a pair run as {PAIR_SEQUENCES} sequences (prompt and chosen, prompt and rejected), "
           "so activations, logits and tokens are twice LoRA's at the same batch. The reference is the base with "
           "the adapter switched off: no second copy of the weights, but one more forward pass of every token "
           "(its logits in the peak, its FLOPs in the time).",
    "orpo": f"ORPO: each example is a pair run as {PAIR_SEQUENCES} sequences (prompt and chosen, prompt and "
            "rejected), so activations, logits and tokens are twice LoRA's at the same batch; no reference model.",
}
"""What a preference method's plan assumes, said under its tables (models.memory.PAIR_SEQUENCES, models.speed)."""
REJECTED_AS_CHOSEN = ("The data set has no rejected answers (it is not preference data), so each pair's rejected "
                      "sequence is counted as long as its chosen one.")
_CELL = "padding:2px 10px;border-bottom:1px solid #8884;text-align:left"


@dataclass(frozen=True)
class Settings:
    """What one step looks like: the part of a TrainConfig (plus the method) that sets memory."""

    method: str
    quant: str
    batch_size: int
    max_length: int
    rank: int
    checkpointing: bool
    gpus: int = 1
    """Data-parallel GPUs, each taking its own ``batch_size`` examples a step."""
    strategy: str = "ddp"

    @classmethod
    def of(cls, config: TrainConfig, method: str) -> "Settings":
        return cls(method, config.quant, config.batch_size, config.max_length, config.rank,
                   config.gradient_checkpointing, config.gpus, config.strategy)

    @property
    def sharded(self) -> bool:
        """FSDP over several GPUs: weights and optimizer states split across them."""
        return self.gpus > 1 and self.strategy == "fsdp"

    def memory(self, shape: ModelShape) -> MemoryBreakdown:
        """Per GPU."""
        return estimate_memory(shape, batch_size=self.batch_size, max_length=self.max_length, rank=self.rank,
                               quant=self.quant, method=self.method, checkpointing=self.checkpointing,
                               precision=GPU_16BIT, gpus=self.gpus, sharded=self.sharded)

    def text(self) -> str:
        quant = {"none": "16-bit", "4bit": "4-bit", "8bit": "8-bit"}[self.quant]
        pairs = f" pairs ({self.batch_size * PAIR_SEQUENCES} sequences)" if self.method in PREFERENCE_METHODS else ""
        parts = [f"batch {self.batch_size}{pairs}", f"max length {self.max_length}", quant]
        if self.method == "full":
            parts.append("full fine-tuning")
        elif self.method in PREFERENCE_METHODS:
            parts.append(self.method.upper())
        if self.checkpointing:
            parts.append("gradient checkpointing")
        if self.gpus > 1:
            parts.append(f"{self.gpus} GPUs with {self.strategy.upper()}")
        return ", ".join(parts)

    def flags(self) -> str:
        return f"--gpus {self.gpus} --strategy {self.strategy}"


@dataclass(frozen=True)
class Schedule:
    """Steps, tokens, time and cost of training on the data, on one GPU and at OpenAI."""

    examples: int
    steps_per_epoch: int
    tokens_per_epoch: int
    """Non-padding tokens after cutting at max length: what OpenAI bills, and a floor on the compute."""
    epochs: float
    flops_per_token: float
    seconds_per_epoch: float
    """On ``gpus`` GPUs together."""
    gpu_usd: float
    """All ``gpus`` GPUs, every epoch."""
    openai_usd: dict[str, float]
    gpus: int
    one_gpu_seconds_per_epoch: float
    efficiency: float
    """The assumed scaling efficiency (models/speed.py): speed-up = gpus x efficiency."""

    @property
    def one_gpu_seconds(self) -> float:
        """The whole training on one GPU: what a speed-up is weighed against."""
        return self.one_gpu_seconds_per_epoch * self.epochs


@dataclass(frozen=True)
class Recommendation:
    settings: Settings
    total_bytes: int
    """Per GPU."""
    gpu: Gpu
    schedule: Schedule | None = None
    """Time and cost at these settings, when the plan has data."""
    sharded_to_fit: bool = False
    """FSDP was chosen because no setting searched fits one GPU."""

    def text(self) -> str:
        each = " per GPU" if self.settings.gpus > 1 else ""
        return (f"{self.settings.text()}: {gib(self.total_bytes)}{each}, fits a {self.gpu.name} "
                f"({gib(self.gpu.memory_bytes)})")


@dataclass(frozen=True)
class Plan:
    """Memory by component for a model and settings, which GPUs it fits, time, cost and a recommendation."""

    model: str
    shape: ModelShape
    settings: Settings
    memory: MemoryBreakdown
    """Without gradient checkpointing."""
    memory_checkpointed: MemoryBreakdown
    gpu: Gpu
    gpus: GpuTable
    schedule: Schedule | None
    recommendation: Recommendation | None
    available: int = 1
    """GPUs of this kind the recommendation may use: the --gpus given, else those this kernel sees."""
    notes: tuple[str, ...] = ()

    @property
    def chosen(self) -> MemoryBreakdown:
        """The breakdown for the settings as given (checkpointing on or off)."""
        return self.memory_checkpointed if self.settings.checkpointing else self.memory

    def fit(self, gpu: Gpu) -> str:
        if fits(self.memory, gpu):
            return "fits"
        return "fits with checkpointing" if fits(self.memory_checkpointed, gpu) else "does not fit"

    def sections(self) -> list[tuple[str, list[tuple[str, ...]]]]:
        """(title, rows) shared by the text and the HTML form; the first row of each is its header."""
        rows = [("component", "no checkpointing", "checkpointing")]
        rows += [(name, gib(a), gib(b)) for (name, a), (_, b) in zip(self.memory.rows(),
                                                                     self.memory_checkpointed.rows())]
        rows.append(("total (peak)", gib(self.memory.total), gib(self.memory_checkpointed.total)))
        rows += self._other_strategy_rows()
        gpus = [("GPU", "memory", "these settings")]
        gpus += [(g.name, gib(g.memory_bytes), self.fit(g)) for g in self.gpus.gpus.values()]
        each = " per GPU" if self.settings.gpus > 1 else ""
        out = [(self._title(), rows), (f"Fits (total{each} at most {FIT_FRACTION:.0%} of the GPU's memory)", gpus)]
        if self.schedule:
            out.append(self._cost_section(self.schedule))
        return out

    def _title(self) -> str:
        s, shape = self.settings, self.shape
        trained = ("all parameters" if s.method == "full"
                   else f"LoRA r{s.rank} all-linear, {shape.lora_parameters(s.rank):,} trainable")
        if s.method in PREFERENCE_METHODS:
            trained = f"{s.method.upper()} on {trained}"
        pairs = f" pairs ({s.batch_size * PAIR_SEQUENCES} sequences)" if s.method in PREFERENCE_METHODS else ""
        per_gpu = f"; per GPU of {s.gpus} with {s.strategy.upper()}" if s.gpus > 1 else ""
        return (f"{self.model}: {shape.parameters:,} parameters, {trained}; batch {s.batch_size}{pairs} x "
                f"{s.max_length} tokens, quant {s.quant}, {GPU_16BIT.name}{per_gpu}")

    def _other_strategy_rows(self) -> list[tuple[str, ...]]:
        """On several GPUs, the other strategy's total per GPU beside this one's."""
        s = self.settings
        if s.gpus == 1 or s.quant == "8bit":  # 8-bit weights cannot be sharded (models.memory)
            return []
        other = next(x for x in STRATEGIES if x != s.strategy)
        totals = [replace(s, strategy=other, checkpointing=c).memory(self.shape).total for c in (False, True)]
        return [(f"total with {other.upper()} instead", *map(gib, totals))]

    def _cost_section(self, sc: Schedule) -> tuple[str, list[tuple[str, ...]]]:
        table = price_table()
        epochs = f"{sc.epochs:g} epoch{'s' if sc.epochs != 1 else ''}"
        rows: list[tuple[str, ...]] = [("", "per epoch", epochs)]
        rows.append(("steps", f"{sc.steps_per_epoch:,}", f"{math.ceil(sc.steps_per_epoch * sc.epochs):,}"))
        rows.append(("tokens", f"{sc.tokens_per_epoch:,}", f"{round(sc.tokens_per_epoch * sc.epochs):,}"))
        if sc.gpus > 1:
            rows.append((f"time on 1 {self.gpu.name}", hours(sc.one_gpu_seconds_per_epoch), hours(sc.one_gpu_seconds)))
            rows.append((f"time on {sc.gpus} {self.gpu.name}s ({self.settings.strategy.upper()}, {sc.efficiency:.0%} "
                         "scaling efficiency assumed)", hours(sc.seconds_per_epoch),
                         hours(sc.seconds_per_epoch * sc.epochs)))
        else:
            rows.append((f"time on {self.gpu.name}", hours(sc.seconds_per_epoch),
                         hours(sc.seconds_per_epoch * sc.epochs)))
        count = f"{sc.gpus} x " if sc.gpus > 1 else ""
        rows.append((f"{count}{self.gpu.name} at ${self.gpu.usd_per_hour:.2f}/h (as of {self.gpus.as_of})",
                     usd(sc.gpu_usd / sc.epochs), usd(sc.gpu_usd)))
        rows += [(f"OpenAI {m} (as of {table.as_of})", usd(v / sc.epochs), usd(v)) for m, v in sc.openai_usd.items()]
        examples = "pairs" if self.settings.method in PREFERENCE_METHODS else "examples"
        title = (f"Time and cost: {sc.examples:,} training {examples}; {sc.flops_per_token / self.shape.parameters:g} "
                 f"x parameters FLOPs per token at {MFU:.0%} of {self.gpu.bf16_tflops:g} TFLOPS; prices approximate")
        return title, rows

    def advice(self) -> str:
        """The recommendation for the chosen GPU, and whether several of them pay: one or two sentences."""
        rec = self.recommendation
        if rec is None:
            shard = "" if self.settings.sharded else ", shard it over several GPUs (--gpus N --strategy fsdp)"
            return (f"No setting searched fits a {self.gpu.name}: choose a larger GPU (--gpu), a smaller model{shard}, "
                    "or leave --batch-size, --max-length and --quant open to the search")
        parallel = self._parallel_advice(rec)
        return f"Recommended for {self.gpu.name}: {rec.text()}" + (f". {parallel}" if parallel else "")

    def _parallel_advice(self, rec: Recommendation) -> str:
        """Whether to train on several GPUs of this kind (empty where there is only one to use)."""
        n, name, sc = max(rec.settings.gpus, self.available), self.gpu.name, rec.schedule
        if n == 1:
            return ""
        if rec.sharded_to_fit:
            per_epoch = f" ({hours(sc.seconds_per_epoch)} per epoch)" if sc else ""
            return (f"It fits no single {name} in any setting searched, but sharded over {n} with FSDP it does: "
                    f"train with {rec.settings.flags()}{per_epoch}")
        if sc is None:
            return f"Give --data to see whether training on {n} {name}s pays" if rec.settings.gpus == 1 else ""
        if sc.one_gpu_seconds < PARALLEL_WORTH_SECONDS:
            return (f"One {name} is enough: the training takes {hours(sc.one_gpu_seconds)} on one, too short for "
                    f"{n} worker processes to repay their start (--gpus 1)")
        if rec.settings.gpus == 1:  # worth it, but DDP's gradient buckets did not fit beside these settings
            return ""
        return (f"{n} {name}s pay: an epoch takes {hours(sc.seconds_per_epoch)} instead of "
                f"{hours(sc.one_gpu_seconds_per_epoch)} on one ({sc.gpus * sc.efficiency:.1f}x at the assumed "
                f"{sc.efficiency:.0%} scaling efficiency): train with {rec.settings.flags()}")

    def text(self) -> str:
        blocks = []
        for title, rows in self.sections():
            widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(max(map(len, rows)))]
            lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
            blocks.append("\n".join([title, *lines]))
        return "\n\n".join([*blocks, *self.notes, self.advice()])

    def _repr_html_(self) -> str:
        parts = []
        for title, rows in self.sections():
            head = "".join(f"<th style='{_CELL}'>{escape(c)}</th>" for c in rows[0])
            body = "".join("<tr>" + "".join(f"<td style='{_CELL}'>{escape(c)}</td>" for c in r) + "</tr>"
                           for r in rows[1:])
            parts.append(f"<p><b>{escape(title)}</b></p><table style='border-collapse:collapse;margin:4px 0'>"
                         f"<tr>{head}</tr>{body}</table>")
        notes = "".join(f"<p>{escape(note)}</p>" for note in self.notes)
        return "<div>" + "".join(parts) + notes + f"<p><b>{escape(self.advice())}</b></p></div>"

    def __repr__(self) -> str:
        return self.text()


def gib(n: int) -> str:
    return f"{n / GIB:.2f} GiB" if n >= GIB // 10 else f"{n / 1024**2:.1f} MiB"


def hours(seconds: float) -> str:
    """GPU time as it is billed: hours, minutes below one, seconds below one minute."""
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{max(seconds, 1):.0f} s"


def usd(x: float) -> str:
    return f"${x:,.2f}" if x >= 0.01 else "<$0.01"


def fits(memory: MemoryBreakdown, gpu: Gpu) -> bool:
    return memory.total <= FIT_FRACTION * gpu.memory_bytes


def sequence_tokens(lengths: Lengths, method: str, max_length: int) -> int:
    """Tokens an epoch runs through the model, each sequence cut at ``max_length``: an example's one (the chosen
    side of a pair, which is what LoRA or full SFT learns from preference data), or under DPO and ORPO a pair's
    two: the rejected side's own counts, or as many as the chosen side's on data without them (REJECTED_AS_CHOSEN)."""
    chosen = sum(min(n, max_length) for n in lengths.full)
    if method not in PREFERENCE_METHODS:
        return chosen
    return chosen + (chosen if lengths.rejected is None else sum(min(n, max_length) for n in lengths.rejected))


def schedule(shape: ModelShape, settings: Settings, config: TrainConfig, lengths: Lengths, gpu: Gpu) -> Schedule:
    """Steps as %ft_train takes them (the same steps_per_epoch), time as the data report takes it (models/speed.py)."""
    stats = TokenStats.of(lengths, settings.max_length)
    tokens = sequence_tokens(lengths, settings.method, settings.max_length)
    per_token = flops_per_token(shape.parameters, settings.method, settings.checkpointing)
    one_gpu = gpu_compute(gpu).seconds(tokens, per_token)
    efficiency = scaling_efficiency(gpu, settings.gpus, settings.sharded)
    seconds = one_gpu / (settings.gpus * efficiency)
    epochs = config.epochs or choose_length(stats.examples, stats.total, settings.batch_size, config.grad_accum,
                                            config.examples_seen).epochs
    return Schedule(
        examples=stats.examples,  # each optimizer step takes batch_size x grad_accum examples on every GPU
        steps_per_epoch=steps_per_epoch(stats.examples, settings.batch_size * settings.gpus, config.grad_accum),
        tokens_per_epoch=tokens, epochs=epochs, flops_per_token=per_token, seconds_per_epoch=seconds,
        gpu_usd=seconds * epochs / 3600 * gpu.usd_per_hour * settings.gpus, openai_usd=openai_usd(tokens, epochs),
        gpus=settings.gpus, one_gpu_seconds_per_epoch=one_gpu, efficiency=efficiency)


def recommend(shape: ModelShape, settings: Settings, gpu: Gpu, *, lengths: tuple[int, ...],
              batch_sizes: tuple[int, ...] = BATCH_SIZES, quants: tuple[str, ...] = ("none", "4bit"),
              ) -> Recommendation | None:
    """The settings that fit ``gpu``: the longest length first, then the largest batch, then 16-bit
    over 4-bit and no checkpointing over checkpointing (each costs speed or quality)."""
    for length in lengths:
        for batch in sorted(batch_sizes, reverse=True):
            for quant in quants:
                for checkpointing in (False, True):
                    candidate = replace(settings, batch_size=batch, max_length=length, quant=quant,
                                        checkpointing=checkpointing)
                    memory = candidate.memory(shape)
                    if fits(memory, gpu):
                        return Recommendation(candidate, memory.total, gpu)
    return None


def candidate_lengths(longest: int, context: int | None) -> tuple[int, ...]:
    """The longest example rounded up to a power of two (at most the context), then halvings."""
    top = max(SHORTEST_LENGTH, 1 << max(0, longest - 1).bit_length())
    if context:
        top = min(top, context)
    out = [top]
    while out[-1] // 2 >= SHORTEST_LENGTH:
        out.append(out[-1] // 2)
    return tuple(out)


def build_plan(model: str, shape: ModelShape, config: TrainConfig, method: str, gpu: Gpu, gpus: GpuTable,
               lengths: Lengths | None = None, *, fixed_length: bool = False, fixed_batch: bool = False,
               fixed_quant: bool = False, fixed_gpus: bool = False, fixed_strategy: bool = False, available: int = 1,
               notes: tuple[str, ...] = ()) -> Plan:
    """The plan for ``config``; the recommendation searches only what the user did not fix, on up to
    ``available`` GPUs of this kind when the number of GPUs is not fixed."""
    settings = Settings.of(config, method)
    rejected = lengths.rejected if lengths and method in PREFERENCE_METHODS else None
    longest = max([*lengths.full, *(rejected or ())]) if lengths and lengths.full else config.max_length
    search_lengths = (settings.max_length,) if fixed_length else candidate_lengths(longest, shape.context)
    quants = (settings.quant,) if fixed_quant or method == "full" else ("none", "4bit")
    data = lengths if lengths and lengths.full else None
    if method in PREFERENCE_METHODS:
        notes = (*notes, METHOD_NOTES[method], *([REJECTED_AS_CHOSEN] if data and rejected is None else []))

    def search(gpus: int, strategy: str) -> Recommendation | None:
        found = recommend(shape, replace(settings, gpus=gpus, strategy=strategy), gpu, lengths=search_lengths,
                          quants=quants, batch_sizes=(settings.batch_size,) if fixed_batch else BATCH_SIZES)
        return found and replace(found, schedule=schedule(shape, found.settings, config, data, gpu) if data else None)

    available = settings.gpus if fixed_gpus else max(1, available)
    strategies = (settings.strategy,) if fixed_strategy else STRATEGIES
    shardable = "8bit" not in quants  # bitsandbytes 8-bit weights cannot be sharded
    one = search(1, settings.strategy)  # the best on one GPU: what several are weighed against
    found = one
    if fixed_gpus and settings.gpus > 1:
        found = next(filter(None, (search(settings.gpus, s) for s in strategies if s != "fsdp" or shardable)), None)
    elif available > 1 and one is None and "fsdp" in strategies and shardable:
        found = search(available, "fsdp")
    elif available > 1 and one and one.schedule and one.schedule.one_gpu_seconds >= PARALLEL_WORTH_SECONDS:
        found = search(available, settings.strategy if fixed_strategy else "ddp") or one
    if found and found.settings.sharded and one is None:
        found = replace(found, sharded_to_fit=True)
    return Plan(
        model=model, shape=shape, settings=settings,
        memory=replace(settings, checkpointing=False).memory(shape),
        memory_checkpointed=replace(settings, checkpointing=True).memory(shape),
        gpu=gpu, gpus=gpus, schedule=schedule(shape, settings, config, data, gpu) if data else None,
        recommendation=found, available=available, notes=notes,
    )


def plan_training(model: str | None = None, data: FtDataset | None = None, *, gpu: str | None = None,
                  method: str | None = None, preset: str = "balanced", **settings: Any) -> Plan:
    """The plan for training ``model`` (default: the data's) on ``data`` with ``preset`` and ``settings``
    (TrainConfig fields) filled as %ft_train fills them, for ``gpu`` (default: this kernel's, else a T4).
    ``method`` is lora, full, dpo or orpo (models.memory.METHODS); by default dpo for a preference data set
    (as %ft_train trains it), else lora.

    Reads only the model's config (no weights); without ``data`` there is no time or cost. The
    recommendation searches every setting not given here; without ``gpus`` it may use every GPU this
    kernel sees when the plan is for this kernel's GPU. ``gpus`` "all" is every GPU this kernel sees,
    and one (with a note) on a kernel that sees none.
    """
    from ..models import DEFAULT_MODEL, load_config
    from ..models.gpus import ALL_GPUS, gpu_count, gpu_table, kernel_gpu, visible_gpus
    from .prepare import with_saved_quantization

    model = model or (data.model if data is not None else DEFAULT_MODEL)
    method = method or ("dpo" if data is not None and data.is_preference else "lora")
    settings = with_saved_quantization(model, settings)
    given = {k for k, v in settings.items() if v is not None}
    notes = ()
    if settings.get("gpus") is not None:
        wanted, settings["gpus"] = settings["gpus"], gpu_count(settings["gpus"])
        if settings["gpus"] == 0 and wanted == ALL_GPUS:
            notes = (f"This kernel sees no GPU, so --gpus {ALL_GPUS} is planned as one.",)
            settings["gpus"] = 1
    if settings.get("max_length") is None and data is not None:
        settings["max_length"] = data.max_length
    config = build_config(preset, model=model, **settings)
    table = gpu_table()
    kernel = kernel_gpu(table)
    chosen = table.get(gpu) if gpu else kernel or table.get(DEFAULT_GPU)
    return build_plan(model, ModelShape.from_config(load_config(model)), config, method, chosen, table,
                      # the rows training keeps after setting the validation slice aside
                      data.validation_split(config.validation, MOST_VALIDATION_ROWS).train_lengths
                      if data is not None else None, fixed_length="max_length" in given,
                      fixed_batch="batch_size" in given, fixed_quant="quant" in given, fixed_gpus="gpus" in given,
                      fixed_strategy="strategy" in given, available=visible_gpus() if chosen == kernel else 1,
                      notes=notes)
