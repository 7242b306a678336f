"""One worker process of a multi-GPU run: ``accelerate launch ... -m jupyter_finetune.worker --run NAME``.

The notebook (``%ft_train --gpus N``) prepares the run and launches N of these (engine.supervise);
each trains its share, and rank 0 writes the run store the notebook reads. A failed worker exits
non-zero, so that torchrun stops the others at once instead of leaving them waiting.
"""

from __future__ import annotations

import argparse
import sys

from . import api


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jupyter_finetune.worker", description=__doc__)
    parser.add_argument("--run", required=True, help="The prepared run to train.")
    parser.add_argument("--runs-dir", required=True, help="The run store that holds it.")
    args = parser.parse_args(argv)
    result = api.join_training(args.run, runs_dir=args.runs_dir)
    return 1 if result.status == "failed" else 0


if __name__ == "__main__":
    sys.exit(main())
