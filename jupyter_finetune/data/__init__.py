"""Data: read, normalise, check, count, split and version fine-tuning examples."""

from .dataset import DEFAULT_MAX_LENGTH, FtDataset, TokenView, prepare, restore
from .formats import FORMATS, Example
from .load import load_data, read_rows
from .problems import DataError, Problem
from .readers import RawRow, read_path, read_records, read_text

__all__ = ["DEFAULT_MAX_LENGTH", "FORMATS", "DataError", "Example", "FtDataset", "Problem", "RawRow",
           "TokenView", "load_data", "prepare", "restore", "read_path", "read_records", "read_rows", "read_text"]
