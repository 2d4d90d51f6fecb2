"""The package logger, after mne-python: one logger and a ``verbose`` argument."""

from __future__ import annotations

import logging
import os

logger = logging.getLogger("sozstore")
if not logger.handlers:
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("%(levelname)s [sozstore] %(message)s"))
    logger.addHandler(_handler)
    logger.propagate = False
logger.setLevel(os.environ.get("SOZSTORE_LOGGING_LEVEL", "WARNING").upper())


def set_log_level(verbose: bool | str | int | None = None) -> None:
    """Set the package log level.

    Parameters
    ----------
    verbose : bool | str | int | None
        ``True`` means INFO, ``False`` WARNING, a level name or number sets it directly,
        ``None`` leaves it unchanged.
    """
    if verbose is None:
        return
    if isinstance(verbose, bool):
        level: int | str = logging.INFO if verbose else logging.WARNING
    elif isinstance(verbose, str):
        level = verbose.upper()
    else:
        level = int(verbose)
    logger.setLevel(level)
