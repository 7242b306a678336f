"""The whole training cycle under SIGKILL (issue 16): train, kill inside a step, while a checkpoint file
or a metrics line is written, resume until done; bench/bench_faults.py runs the cycles and its
docstring says where the kills land."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))
from bench_faults import CYCLES, run_faults  # noqa: E402


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_every_killed_run_resumes_to_a_completed_run_with_each_step_once_and_an_adapter_that_loads(tiny_model_dir,
                                                                                                  tmp_path):
    result = run_faults(tiny_model_dir, tmp_path)
    failed = [f"cycle {c['index']}, killed {c['where']}: {'; '.join(c['problems'])}"
              for c in result["outcomes"] if c["problems"]]
    assert result["cycles"] == CYCLES and not failed, f"{len(failed)} of {CYCLES} cycles failed:\n" + "\n".join(failed)
