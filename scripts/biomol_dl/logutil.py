"""Progress logging for rule scripts.

Every long step reports progress through the standard `logging` module; a rule script points it at
the rule's `log:` file so `tail -f logs/<rule>/...log` answers "how far along is it".
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(log_file: str | Path | None = None, level: int = logging.INFO) -> logging.Logger:
    """Send `biomol_dl` log records to `log_file` (line-buffered) and to stderr."""
    root = logging.getLogger("biomol_dl")
    root.setLevel(level)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    for handler in handlers:
        handler.setFormatter(logging.Formatter(FORMAT, datefmt="%H:%M:%S"))
        root.addHandler(handler)
    root.propagate = False
    return root


def get(name: str) -> logging.Logger:
    """A child logger of `biomol_dl`, e.g. `get(__name__)`."""
    return logging.getLogger(name if name.startswith("biomol_dl") else f"biomol_dl.{name}")
