"""IPython magics: parse the line, call api, return the result.

A magic returns what it made (a data set, a plan, a report, the runs, an export), and IPython's
display protocol shows it: ``report = %ft_eval ...`` keeps it without showing it, and a cell
ending in the magic shows it once (``ui.display`` explains the HTML and text forms). Messages
that are not a result ("stopping X") are logged. Only ``api`` and ``ui`` are imported from the
package (tests/test_layers.py); importing ``api`` loads no torch.
"""

from __future__ import annotations

import logging
import re
from contextlib import contextmanager
from typing import Any, Iterator

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import Unicode

from . import api

log = logging.getLogger(__name__)


@contextmanager
def user_errors() -> Iterator[None]:
    """A mistake the user can fix as a UsageError (its message, no traceback): a FinetuneError, or an OSError
    naming a path (read-only, full, a file in the way). Anything else is a bug and keeps its traceback.

    A decorator on each magic (``@user_errors()``), and a ``with`` block in the awaited %ft_train."""
    try:
        yield
    except api.FinetuneError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        problem = api.path_problem(exc)
        if problem is None:
            raise
        raise UsageError(str(problem)) from None


def parse(magic: Any, line: str) -> Any:
    """The magic's arguments, without a trailing ``# comment``: IPython hands a line magic the rest of its
    line, comment included, and notebooks (and the README) write ``%ft_runs  # every run``."""
    return parse_argstring(magic, without_comment(line))


def without_comment(line: str) -> str:
    """The line up to a ``#`` that starts a word outside quotes (``--system "#1"`` keeps its text)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line


@magics_class
class FinetuneMagics(Magics):
    runs_dir = Unicode("", config=True,
                       help="Run store root (e.g. a mounted Drive folder); default $JUPYTER_FINETUNE_RUNS or ./ft_runs")

    @magic_arguments()
    @argument("name", help="Name for the data set; it is stored under this name in the notebook.")
    @argument("--from", dest="source", metavar="PATH_OR_VARIABLE",
              help="A .jsonl/.json/.csv/.parquet file, or a DataFrame / datasets.Dataset / list variable.")
    @argument("--format", default="auto", choices=["auto", *api.FORMATS], help="Input layout (default: detect).")
    @argument("--split", default="0.1", help="Test fraction (default 0.1), or a test file / variable.")
    @argument("--seed", type=int, default=0, help="Seed of the deterministic split.")
    @argument("--model", default=None, help="Model whose chat template counts tokens (default smollm2-135m).")
    @argument("--max-length", type=int, default=None, help="Training max length in tokens (default 1024).")
    @line_cell_magic
    @user_errors()
    def ft_data(self, line: str, cell: str | None = None) -> Any:
        """Check, count and split fine-tuning data; store it under NAME and return it.

        Cell form: ``%%ft_data NAME`` with JSONL in the cell. Line form:
        ``%ft_data NAME --from PATH_OR_VARIABLE``.
        """
        from .ui import data_report

        args = parse(self.ft_data, line)
        if (cell is None or not cell.strip()) == (args.source is None):
            raise UsageError("give the data either in the cell body (%%ft_data NAME) or with --from PATH_OR_VARIABLE")
        options = {k: v for k, v in (("model", args.model), ("max_length", args.max_length)) if v is not None}
        try:
            ds = api.load_data(args.name, cell if args.source is None else self._lookup(args.source),
                               format=args.format, split=self._split(args.split), seed=args.seed, **options)
        except api.DataError as exc:
            data_report.show_errors(args.name, exc.problems)
            raise
        self.shell.user_ns[args.name] = ds
        return ds

    def _data_set(self, name: str, problem: str | None = None):
        """The data set ``name`` made by %%ft_data in this notebook; ``problem`` words the error if there is none."""
        data = self.shell.user_ns.get(name)
        if data is None or not hasattr(data, "to_hf"):
            raise UsageError(problem or f"{name!r} is not a data set in this notebook: make it with %%ft_data {name}")
        return data

    def _lookup(self, value: str):
        """A variable of the user's namespace by that name, else the string as a path."""
        return self.shell.user_ns.get(value, value) if value.isidentifier() else value

    def _split(self, value: str):
        try:
            return float(value)
        except ValueError:
            return self._lookup(value)

    def _runs_dir(self, args: Any) -> str | None:
        """This call's --runs-dir, else the configured one (%config FinetuneMagics.runs_dir), else api's default."""
        return args.runs_dir or self.runs_dir or None

    @magic_arguments()
    @argument("data", nargs="?", help="A data set made by %%ft_data (optional with --resume).")
    @argument("--model", help="Alias, folder, .gguf or hub id (default: the data's model).")
    @argument("--name", help="Run name (default: DATA-N, counting up).")
    @argument("--preset", default="balanced", choices=list(api.PRESETS))
    @argument("--epochs", type=float, help="Passes over the data (default: chosen from the data's size).")
    @argument("--steps", type=int, help="Optimizer steps (overrides --epochs).")
    @argument("--batch-size", type=int)
    @argument("--grad-accum", type=int)
    @argument("--lr", type=float)
    @argument("--rank", type=int)
    @argument("--alpha", type=int)
    @argument("--dropout", type=float)
    @argument("--target-modules", help="all-linear, or names such as q_proj,v_proj.")
    @argument("--max-length", type=int)
    @argument("--seed", type=int)
    @argument("--quant", choices=api.QUANTS)
    @argument("--gradient-checkpointing", action="store_true", default=None,
              help="Recompute activations in the backward pass: less memory, about a third slower.")
    @argument("--backend", choices=api.BACKENDS,
              help="auto (default): unsloth on an NVIDIA GPU where it is installed, else hf (transformers + peft).")
    @argument("--report-to", help="tensorboard,mlflow,wandb")
    @argument("--save-steps", type=int,
              help="Checkpoint every N steps (default: every 10 minutes of training, so a lost VM costs at most that).")
    @argument("--validation", type=float,
              help="Fraction of the training rows (at most 64) scored during training (default 0.1; 0: off).")
    @argument("--early-stopping", action="store_true", default=None,
              help="Stop once the validation score stops improving (default: on when no --epochs/--steps).")
    @argument("--no-early-stopping", dest="early_stopping", action="store_false")
    @argument("--patience", type=int, help="Validations without a better score before stopping (default 3).")
    @argument("--gpus", metavar="N|all",
              help="Data-parallel worker processes, one per GPU, launched by accelerate (default 1).")
    @argument("--strategy", choices=api.STRATEGIES,
              help="With --gpus: ddp (a whole copy on each GPU; default) or fsdp (weights sharded across them).")
    @argument("--method", choices=api.TRAIN_METHODS,
              help="sft (learn the answers), dpo (prefer chosen over rejected) or orpo; default: dpo for preference "
                   "data, else sft.")
    @argument("--from", dest="from_run", metavar="RUN",
              help="Start from RUN's adapter (usually an SFT run); under dpo it is the reference too.")
    @argument("--beta", type=float, help="dpo: how close to the reference the model stays (default 0.1).")
    @argument("--loss", choices=api.DPO_LOSSES, help="dpo's loss (default sigmoid, the paper's).")
    @argument("--background", action="store_true", help="Return at once; the dashboard keeps updating.")
    @argument("--resume", metavar="RUN", help="Continue RUN from its last checkpoint.")
    @argument("--overwrite", action="store_true", help="Replace an existing run of the same name.")
    @argument("--runs-dir", help="Run store root for this call.")
    @line_magic
    @user_errors()
    def ft_train(self, line: str) -> Any:
        """LoRA fine-tune on a data set, with a live dashboard; the run is kept under ft_runs/NAME.

        Returns the TrainResult (with --background: the running TrainJob).
        """
        data, options = self._training_options(line)
        result = api.train(data, **options)
        return result if options["background"] else self._check_result(result)

    async def ft_train_awaited(self, line: str) -> Any:
        """``%ft_train`` as an awaited call (see ``awaited_training``): the cell waits on the event
        loop, so the kernel handles the dashboard's Stop button while training runs."""
        data, options = self._training_options(line)
        with user_errors():
            if options.pop("background"):
                return api.train(data, background=True, **options)
            result = await api.train_async(data, **options)
        return self._check_result(result)

    def _training_options(self, line: str) -> tuple[Any, dict[str, Any]]:
        """The data set and api.train's options, from the magic's line."""
        args = parse(self.ft_train, line)
        data = None if args.data is None else self._data_set(args.data)
        settings = {k: getattr(args, k) for k in ("model", "epochs", "steps", "batch_size", "grad_accum", "lr", "rank",
                                                  "alpha", "dropout", "target_modules", "max_length", "seed", "quant",
                                                  "backend", "report_to", "gradient_checkpointing", "save_steps",
                                                  "validation", "early_stopping", "patience", "gpus", "strategy",
                                                  "method", "from_run", "beta", "loss")}
        return data, dict(name=args.name, preset=args.preset, resume=args.resume, overwrite=args.overwrite,
                          runs_dir=self._runs_dir(args), background=args.background, **settings)

    @staticmethod
    def _check_result(result: Any) -> Any:
        if result.status == "failed":
            raise UsageError(f"run {result.run} failed: {result.message}")
        return result

    @magic_arguments()
    @argument("--model", help="Alias, folder, .gguf or hub id (default: the data's model, else smollm2-135m).")
    @argument("--data", metavar="NAME", help="A data set of this notebook: adds steps, time and cost per epoch.")
    @argument("--method", choices=api.METHODS, help="lora, full, or LoRA on preference pairs: dpo or orpo "
                                                     "(default: dpo for a preference data set, else lora).")
    @argument("--quant", choices=api.QUANTS, help="Base weights (default: the preset's, none).")
    @argument("--batch-size", type=int)
    @argument("--max-length", type=int, help="Default: the data's max length, else the preset's (1024).")
    @argument("--rank", type=int, help="LoRA rank (default: the preset's).")
    @argument("--gradient-checkpointing", action="store_true", default=None)
    @argument("--preset", default="balanced", choices=list(api.PRESETS))
    @argument("--gpu", help="GPU to recommend settings for (default: this kernel's, else T4): T4, L4, A10G, A100-80, H100, ...")
    @argument("--gpus", metavar="N|all", help="Plan data-parallel training on N of them (all: every GPU this kernel "
                                               "sees); default: one, with advice on using all this kernel sees.")
    @argument("--strategy", choices=api.STRATEGIES,
              help="With --gpus: ddp (a whole copy per GPU, the default) or fsdp (weights sharded across them).")
    @line_magic
    @user_errors()
    def ft_plan(self, line: str) -> Any:
        """Peak GPU memory by component, which GPUs fit, time and cost per epoch: from the config, no weights."""
        args = parse(self.ft_plan, line)
        data = None if args.data is None else self._data_set(args.data)
        return api.plan(args.model, data, gpu=args.gpu, method=args.method, preset=args.preset, quant=args.quant,
                        batch_size=args.batch_size, max_length=args.max_length, rank=args.rank,
                        gradient_checkpointing=args.gradient_checkpointing, gpus=args.gpus, strategy=args.strategy)

    @magic_arguments()
    @argument("run", nargs="?", help="The run to stop (default: every run training in this kernel).")
    @line_magic
    @user_errors()
    def ft_stop(self, line: str) -> list[str]:
        """Stop a training run of this kernel at its next step (all running ones without a name)."""
        args = parse(self.ft_stop, line)
        names = api.stop(args.run)
        log.info(f"stopping {', '.join(names)}" if names else "nothing is training")
        return names

    @magic_arguments()
    @argument("run", help="The run to evaluate.")
    @argument("--data", metavar="NAME[:test]", help="A data set of this notebook and its split (default: the run's own).")
    @argument("--against", help="Systems beside fine-tuned: base, fewshot, retrieval, rag, fine-tuned+rag, or none "
                                "(default: base,fewshot,retrieval, and rag with --docs). A run trained --from "
                                "another is compared with that run's adapter too, unless none.")
    @argument("--shots", type=int, default=3, help="Training examples in the fewshot and retrieval prompts (default 3).")
    @argument("--docs", metavar="PATH", help="Documents for rag: a folder of .md/.txt/.html/.pdf files or a JSONL of passages.")
    @argument("--passages", type=int, default=3, help="Passages retrieved per question for rag (default 3).")
    @argument("--metric", help="exact,contains,json_valid,json_fields,f1,rougeL or module:function "
                               "(default: by answer type).")
    @argument("--threshold", help="The bar, e.g. json_fields>=0.9 (or 0.9 for the first metric; default: within "
                                  "0.05 of the best system).")
    @argument("--requests-per-day", type=int, default=1000, help="Expected traffic, for the break-even (default 1000).")
    @argument("--payback-days", type=int, default=30,
              help="Fine-tuning must pay its training back within this many days to beat a prompt that passes "
                   "(default 30).")
    @argument("--max-new-tokens", type=int, help="Default: the longest reference answer + 16.")
    @argument("--batch-size", type=int, help="Rows generated at once. Default: what free memory holds.")
    @argument("--limit", type=int, help="Evaluate on the first N held-out rows only.")
    @argument("--forgetting", action="store_true", help="Also check general-prompt perplexity for regressions.")
    @argument("--regenerate", action="store_true",
              help="Generate (and score preference pairs) again even if saved results match.")
    @argument("--runs-dir", help="Run store root for this call.")
    @line_magic
    @user_errors()
    def ft_eval(self, line: str) -> Any:
        """Fine-tuned vs prompting, retrieval and RAG on held-out rows, with a recommendation and its break-even.

        On preference pairs, also each model's preference accuracy (base, the run it started from, the run)
        and the answers' mean lengths beside the chosen and rejected answers'."""
        args = parse(self.ft_eval, line)
        name, split = api.data_spec(args.data) if args.data else (None, "test")
        data = None if name is None else self._data_set(
            name, f"--data {args.data!r}: give a data set of this notebook (made with %%ft_data {name})")
        return api.evaluate(args.run, data, split=split, against=args.against, shots=args.shots, docs=args.docs,
                            passages=args.passages, metrics=args.metric, threshold=args.threshold,
                            requests_per_day=args.requests_per_day, payback_days=args.payback_days,
                            max_new_tokens=args.max_new_tokens,
                            batch_size=args.batch_size, limit=args.limit, forgetting=args.forgetting,
                            regenerate=args.regenerate, runs_dir=self._runs_dir(args))

    @magic_arguments()
    @argument("names", nargs="*", metavar="RUN", help="Runs to compare: loss curves overlaid, settings side by side.")
    @argument("--history", action="store_true",
              help="RUN's saved evaluations over time and data versions, with drops flagged.")
    @argument("--tolerance", type=float, help="With --history: how far a score may fall unflagged (default 0.05).")
    @argument("--metric", help="With --history: the metric followed (default: the newest evaluation's first).")
    @argument("--runs-dir", help="Run store root for this call.")
    @line_magic
    @user_errors()
    def ft_runs(self, line: str) -> Any:
        """Every run in the store, newest first; with RUN names, those runs compared.

        The comparison overlays their loss curves (train solid, eval dashed, one colour per run)
        and highlights the settings that differ between them. ``%ft_runs RUN --history`` shows
        every evaluation of RUN, each compared with the previous one of the same adapter.
        """
        args = parse(self.ft_runs, line)
        if args.history or args.tolerance is not None or args.metric:
            if not args.history or len(args.names) != 1:
                raise UsageError("usage: %ft_runs RUN --history [--tolerance 0.05] [--metric M] (one run)")
            return api.eval_history(args.names[0], tolerance=args.tolerance, metric=args.metric,
                                    runs_dir=self._runs_dir(args))
        return api.compare_runs(args.names, self._runs_dir(args)) if args.names else api.runs(self._runs_dir(args))

    @magic_arguments()
    @argument("run", help="A trained run (it needs its adapter; --to script needs only its settings and data).")
    @argument("--message", help="Send this one message and show both answers (the form for a plain terminal).")
    @argument("--system", help="System prompt (default: the one most training rows share; '' for none).")
    @argument("--max-new-tokens", type=int, help="Longest answer in tokens (default 128).")
    @argument("--runs-dir", help="Run store root for this call.")
    @line_magic
    @user_errors()
    def ft_chat(self, line: str) -> Any:
        """Chat playground: each message answered by the base model and by RUN's fine-tuned model, side by side.

        With --message, one exchange, returned as a ChatReply.
        """
        from .ui import chat
        from .ui.env import widgets_available

        args = parse(self.ft_chat, line)
        if args.message is None and not widgets_available():
            raise UsageError(f'widgets cannot render here: %ft_chat {args.run} --message "..." shows both answers')
        message, system = self._unquoted(args.message), self._unquoted(args.system)
        options = dict(runs_dir=self._runs_dir(args), max_new_tokens=args.max_new_tokens)
        if message is not None:
            return api.chat(args.run, message, system=system, **options)
        chat.ChatPlayground(api.chat_session(args.run, **options), system=system).show()  # a live widget
        return None

    @staticmethod
    def _unquoted(text: str | None) -> str | None:
        """The text without the quotes typed around it: magic_arguments keeps them (%%writefile strips them too)."""
        if text and len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
            return text[1:-1]
        return text

    @magic_arguments()
    @argument("run", help="A trained run (it needs its adapter; --to script needs only its settings and data).")
    @argument("--to", default="adapter", choices=api.EXPORT_KINDS,
              help="adapter (with a model card), merged safetensors, a GGUF file, a folder for ollama create, or "
                   "a script folder that trains the run again elsewhere (accelerate, torchrun, SLURM).")
    @argument("--quant", choices=api.GGUF_QUANTS,
              help="GGUF weights, for gguf and ollama (default f16 for gguf, q4_k_m for ollama).")
    @argument("--out", metavar="DIR", help="Where to write (default: ft_runs/RUN/export/KIND).")
    @argument("--overwrite", action="store_true", help="Replace an earlier export in the same place.")
    @argument("--runs-dir", help="Run store root for this call.")
    @line_magic
    @user_errors()
    def ft_export(self, line: str) -> Any:
        """Export a trained run for use outside this notebook; what was written is recorded in the run."""
        args = parse(self.ft_export, line)
        return api.export(args.run, args.to, quant=args.quant, out=args.out, overwrite=args.overwrite,
                          runs_dir=self._runs_dir(args))


_TOP_LEVEL_TRAIN = re.compile(r"^(\w+ *= *)?get_ipython\(\)\.run_line_magic\('ft_train', (.*)\)(\s*)$")
AWAITED_NAME = "_ft_train_awaited"


def awaited_training(lines: list[str]) -> list[str]:
    """Input transformer: a top-level ``%ft_train`` (or ``r = %ft_train``) in a kernel cell becomes an awaited call.

    A cell blocked in plain Python cannot receive widget messages until it ends, so a Stop button
    would do nothing; ipykernel 7 handles them while an async cell awaits, and on ipykernel 6 the
    awaiting training loop hands them over itself (``ui.kernel_comms``). ``{name}`` and
    ``$name`` are expanded in the cell's namespace, as run_line_magic would. Lines inside blocks
    (indented) are left as they are.
    """
    return [_TOP_LEVEL_TRAIN.sub(rf"\1await {AWAITED_NAME}(get_ipython().var_expand(\2))\3", line) for line in lines]


def register(ipython) -> None:
    from .ui import display, env

    magics = FinetuneMagics(ipython)
    ipython.register_magics(magics)
    display.register(ipython)
    if env.in_kernel(ipython) and ipython.autoawait:
        ipython.push({AWAITED_NAME: magics.ft_train_awaited}, interactive=False)
        if awaited_training not in ipython.input_transformers_post:
            ipython.input_transformers_post.append(awaited_training)
