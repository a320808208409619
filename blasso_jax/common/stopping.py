"""Graceful stops: SIGINT (Ctrl-C) and SIGTERM (preemption, Colab) end a run after the epoch in flight.

The epoch finishes, a checkpoint of it is written and `StopRequested` carries the exit status a shell
expects (128 + the signal: 130, 143); `--resume` then continues bitwise as if never stopped. A second
signal stops at once: `--resume` then continues from the newest checkpoint on disk (the epoch in flight
is lost, and one whose metrics line was written but whose checkpoint was not is trained again).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator

import numpy as np

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequested(Exception):
    """A run stopped by a signal after checkpointing epoch `epoch`; `exit_code` is 128 + the signal number."""

    def __init__(self, signum: int, epoch: int, workdir: str):
        self.exit_code = 128 + signum
        super().__init__(
            f"stopped at epoch {epoch} ({signal.Signals(signum).name}); continue with --resume --workdir={workdir}"
        )


class StopFlag:
    """The first stop signal received, or None."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def agreed(self) -> int | None:
        """The signal every process acts on: the first one any process received (processes must stop together)."""
        import jax

        if jax.process_count() == 1:
            return self.signum
        from jax.experimental import multihost_utils

        received = multihost_utils.process_allgather(np.int32(self.signum or 0))
        return int(received.max()) or None


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopFlag]:
    """Within it, SIGINT and SIGTERM set the yielded flag instead of raising; a second one exits at once.

    Outside the main thread (where Python cannot install handlers) the flag is never set.
    """
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handle(signum: int, frame) -> None:
        if flag.signum is not None:
            print(
                f"\n{signal.Signals(signum).name} again: stopping now; --resume continues from the newest checkpoint "
                "on disk",
                file=sys.stderr,
            )
            sys.exit(128 + signum)
        flag.signum = signum
        print(
            f"\n{signal.Signals(signum).name}: stopping after this epoch's checkpoint (signal again to stop now)",
            file=sys.stderr,
            flush=True,
        )

    previous = {signum: signal.signal(signum, handle) for signum in STOP_SIGNALS}
    try:
        yield flag
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
