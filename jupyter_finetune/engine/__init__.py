"""Training engine: one TrainConfig, backends behind one protocol, events to listeners."""

from .config import PRESETS, ConfigError, TrainConfig, build_config

__all__ = ["PRESETS", "ConfigError", "TrainConfig", "build_config"]
