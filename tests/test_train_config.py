"""Presets fill one TrainConfig; flags override fields; bad settings are all named at once."""

from __future__ import annotations

import json

import pytest

from jupyter_finetune.engine import ConfigError, TrainConfig, build_config


def test_preset_fills_and_flags_override():
    config = build_config("quick", lr=1e-3, rank=None, target_modules="q_proj, v_proj")
    assert (config.epochs, config.examples_seen, config.rank, config.lr) == (None, 400, 8, 1e-3)
    assert config.target_modules == ("q_proj", "v_proj")


def test_every_bad_setting_is_listed_at_once():
    with pytest.raises(ConfigError) as info:
        build_config(batch_size=0, lr=5.0, quant="3bit", report_to="tensorboard,neptune")
    message = str(info.value)
    for text in ("batch_size must be at least 1", "lr must be between 0 and 1", "quant '3bit' is not one of",
                 "report_to 'neptune'"):
        assert text in message


def test_unknown_preset_and_setting_are_named():
    with pytest.raises(ConfigError, match="unknown preset 'fast'"):
        build_config("fast")
    with pytest.raises(ConfigError, match="unknown setting.*learning_rate"):
        build_config(learning_rate=1e-4)


def test_config_round_trips_through_its_saved_json():
    config = build_config("thorough", steps=80, target_modules="q_proj, v_proj", report_to="tensorboard")
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_an_unknown_saved_setting_is_refused_by_name():
    saved = json.loads(json.dumps({**build_config().to_dict(), "learning_rate": 1e-4}))
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) learning_rate in saved settings"):
        TrainConfig.from_dict(saved)
