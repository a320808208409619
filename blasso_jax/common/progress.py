"""What a run tells its user while it trains: one status line per epoch, and plain log lines."""

from __future__ import annotations

import sys
from typing import Any


class Progress:
    """One status line per epoch: redrawn in place on a terminal, plain lines otherwise."""

    def __init__(self, total_epochs: int, stream=None):
        self.total = total_epochs
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()

    def update(self, record: dict[str, Any], seconds_left: float) -> None:
        sparsity = record["nonzero_fraction"]
        parts = [
            f"epoch {record['epoch']}/{self.total}",
            f"loss {record['train_loss']:.4f}",
            f"train {record['train_accuracy']:.4f}",
        ]
        if record.get("val_accuracy") is not None:
            parts.append(f"val {record['val_accuracy']:.4f}")
        if record.get("test_accuracy") is not None:
            parts.append(f"test {record['test_accuracy']:.4f}")
        if record.get("skipped_steps"):
            parts.append(f"skipped {record['skipped_steps']} step(s)")
        parts += [
            f"non-zero {100 * sparsity:.2f}%",
            f"{record['epoch_seconds']:.2f}s/epoch",
            f"left {_hms(seconds_left)}",
        ]
        line = " | ".join(parts)
        if self.tty:
            self.stream.write("\r\033[K" + line)
            if record["epoch"] == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _hms(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


def log(message: str) -> None:
    """A line for the user, flushed at once (runs are often followed through a pipe or a log file).

    Only process 0 of a multi-process run prints.
    """
    import jax

    if jax.process_index() == 0:
        print(message, flush=True)
