"""IPython magics: parse the line, call api, display the result."""

from __future__ import annotations

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

FORMAT_CHOICES = ["auto", "messages", "prompt_completion", "alpaca", "sharegpt", "text"]


@magics_class
class FinetuneMagics(Magics):
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


def register(ipython) -> None:
    ipython.register_magics(FinetuneMagics)
