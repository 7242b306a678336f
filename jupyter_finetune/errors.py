"""The errors a user can fix: one base class below every layer, so a front end catches one thing.

Every layer (runs/ included) may import this module; it imports nothing. Each class also keeps the
builtin it replaced (``ValueError``, ``FileNotFoundError``, ...) as a base, so ``except ValueError``
written against earlier versions still catches it. A magic turns a ``FinetuneError`` into a
``UsageError`` (the message, no traceback); any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class FinetuneError(Exception):
    """Something the user asked for cannot be done as asked; the message says what to do instead."""


class InvalidValue(FinetuneError, ValueError):
    """A value the user gave (a name, a fraction, a metric, a threshold, ...) cannot be used."""


class NotFound(FinetuneError, FileNotFoundError):
    """A file, run, sample or adapter the user named does not exist (yet)."""


class UnsupportedType(FinetuneError, TypeError):
    """An object of a type this operation does not read."""
