"""IPython magics: parse the line, call api, display the result."""

from __future__ import annotations

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import Unicode

FORMAT_CHOICES = ["auto", "messages", "prompt_completion", "alpaca", "sharegpt", "text"]


@magics_class
class FinetuneMagics(Magics):
    runs_dir = Unicode("", config=True,
                       help="Run store root (e.g. a mounted Drive folder); default $JUPYTER_FINETUNE_RUNS or ./ft_runs")

    @magic_arguments()
    @argument("name", help="Name for the data set; it is stored under this name in the notebook.")
    @argument("--from", dest="source", metavar="PATH_OR_VARIABLE",
              help="A .jsonl/.json/.csv/.parquet file, or a DataFrame / datasets.Dataset / list variable.")
    @argument("--format", default="auto", choices=FORMAT_CHOICES, help="Input layout (default: detect).")
    @argument("--split", default="0.1", help="Test fraction (default 0.1), or a test file / variable.")
    @argument("--seed", type=int, default=0, help="Seed of the deterministic split.")
    @argument("--model", default=None, help="Model whose chat template counts tokens (default smollm2-135m).")
    @argument("--max-length", type=int, default=None, help="Training max length in tokens (default 1024).")
    @line_cell_magic
    def ft_data(self, line: str, cell: str | None = None):
        """Check, count and split fine-tuning data; store it under NAME.

        Cell form: ``%%ft_data NAME`` with JSONL in the cell. Line form:
        ``%ft_data NAME --from PATH_OR_VARIABLE``.
        """
        from . import api
        from .data import DataError
        from .ui import data_report

        args = parse_argstring(self.ft_data, line)
        if (cell is None or not cell.strip()) == (args.source is None):
            raise UsageError("give the data either in the cell body (%%ft_data NAME) or with --from PATH_OR_VARIABLE")
        options = {k: v for k, v in (("model", args.model), ("max_length", args.max_length)) if v is not None}
        try:
            ds = api.load_data(args.name, cell if args.source is None else self._lookup(args.source),
                               format=args.format, split=self._split(args.split), seed=args.seed, **options)
        except DataError as exc:
            self._show_errors(args.name, exc)
            raise UsageError(str(exc)) from None
        except (ValueError, FileNotFoundError, TypeError) as exc:
            raise UsageError(str(exc)) from None
        self.shell.user_ns[args.name] = ds
        data_report.show(ds)

    def _lookup(self, value: str):
        """A variable of the user's namespace by that name, else the string as a path."""
        return self.shell.user_ns.get(value, value) if value.isidentifier() else value

    def _split(self, value: str):
        try:
            return float(value)
        except ValueError:
            return self._lookup(value)

    @staticmethod
    def _show_errors(name: str, exc) -> None:
        from IPython.display import HTML, display

        from .ui import data_report
        from .ui.env import widgets_available

        if widgets_available():
            display(HTML(data_report.errors_html(name, exc.problems)))


    @magic_arguments()
    @argument("data", nargs="?", help="A data set made by %%ft_data (optional with --resume).")
    @argument("--model", help="Alias, folder, .gguf or cached hub id (default: the data's model).")
    @argument("--name", help="Run name (default: DATA-N, counting up).")
    @argument("--preset", default="balanced", choices=["quick", "balanced", "thorough"])
    @argument("--epochs", type=float)
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
    @argument("--quant", choices=["4bit", "8bit", "none"])
    @argument("--backend", choices=["auto", "unsloth", "hf"])
    @argument("--report-to", help="tensorboard,mlflow,wandb")
    @argument("--background", action="store_true", help="Return at once; the dashboard keeps updating.")
    @argument("--resume", metavar="RUN", help="Continue RUN from its last checkpoint.")
    @argument("--overwrite", action="store_true", help="Replace an existing run of the same name.")
    @argument("--runs-dir", help="Run store root for this call.")
    @line_magic
    def ft_train(self, line: str):
        """LoRA fine-tune on a data set, with a live dashboard; the run is kept under ft_runs/NAME."""
        from . import api
        from .engine import ConfigError
        from .runs import RunExists
        from .ui.training import run_job

        args = parse_argstring(self.ft_train, line)
        data = None
        if args.data is not None:
            data = self.shell.user_ns.get(args.data)
            if data is None or not hasattr(data, "to_hf"):
                raise UsageError(f"{args.data!r} is not a data set in this notebook: make it with %%ft_data {args.data}")
        settings = {k: getattr(args, k) for k in ("model", "epochs", "steps", "batch_size", "grad_accum", "lr", "rank",
                                                  "alpha", "dropout", "target_modules", "max_length", "seed", "quant",
                                                  "backend", "report_to")}
        try:
            job = api.prepare_training(data, name=args.name, preset=args.preset, resume=args.resume,
                                       overwrite=args.overwrite, runs_dir=args.runs_dir or self.runs_dir or None,
                                       **settings)
        except (ConfigError, RunExists, FileNotFoundError, ValueError) as exc:
            raise UsageError(str(exc)) from None
        result = run_job(job, background=args.background)
        if not args.background and result.status == "failed":
            raise UsageError(f"run {result.run} failed: {result.message}")
        return None

    @line_magic
    def ft_stop(self, line: str):
        """Stop a training run of this kernel at its next step (all running ones without a name)."""
        from . import api

        try:
            names = api.stop(line.strip() or None)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        print(f"stopping {', '.join(names)}" if names else "nothing is training")


def register(ipython) -> None:
    ipython.register_magics(FinetuneMagics)
