"""Training time before training: the data report and %ft_plan answer with one estimator."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from helpers import good_rows
from jupyter_finetune import api
from jupyter_finetune.data.length import choose_length
from jupyter_finetune.models import ALIASES
from jupyter_finetune.models.memory import GIB


def _kernel_gpu(monkeypatch, name: str, gib: float) -> None:
    """This kernel's CUDA device, as torch reports it (the machine running the tests has none)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda device: SimpleNamespace(name=name, total_memory=round(gib * GIB)))


def test_data_report_and_plan_give_the_same_time_on_the_kernels_gpu(tiny_model_dir, monkeypatch):
    """On a Colab T4 the data report's local training time is the time %ft_plan gives for that T4."""
    _kernel_gpu(monkeypatch, "Tesla T4", 15.6)
    ds = api.load_data("tickets", good_rows(60), model=str(tiny_model_dir))
    plan = api.plan(data=ds)
    s = plan.schedule
    assert plan.gpu.name == ds.cost.local_device == "T4" and ds.cost.epochs == s.epochs
    assert ds.cost.local_seconds == pytest.approx(s.seconds_per_epoch * s.epochs)
    kept = ds.validation_split(0.1, 64)  # the rows %ft_train keeps beside its validation slice
    assert s.examples == len(kept.train) and s.epochs == choose_length(len(kept.train), kept.train_tokens, 8, 1).epochs
    assert f"for {s.epochs} epochs on T4" in repr(ds)


def test_cpu_time_for_smollm2_is_the_lora_speed_measured_on_two_cores():
    """The README's quickstart measured ~131 non-padding tokens/s for LoRA r16 on SmolLM2-135M, 2 CPU cores."""
    from jupyter_finetune.data.estimate import estimate
    from jupyter_finetune.models.speed import cpu_compute

    e = estimate(131 * 600, ALIASES["smollm2-135m"].parameters, epochs=1, compute=cpu_compute(cores=2))
    assert e.local_device == "CPU, 2 cores" and e.local_seconds == pytest.approx(600, rel=0.01)


def test_a_gpu_the_table_does_not_know_gets_no_time_rather_than_the_cpus(monkeypatch):
    from jupyter_finetune.data.estimate import estimate

    _kernel_gpu(monkeypatch, "Tesla V100-SXM2-16GB", 16)
    e = estimate(10_000, ALIASES["smollm2-135m"].parameters)
    assert (e.local_seconds, e.local_device) == (None, "a GPU not in the table")
