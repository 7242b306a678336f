"""Training engine: one TrainConfig, backends behind one protocol, events to listeners."""

from .config import PRESETS, ConfigError, TrainConfig, build_config
from .events import Event, Listener

__all__ = ["PRESETS", "ConfigError", "Event", "Listener", "TrainConfig", "build_config"]
