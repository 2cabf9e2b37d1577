"""When the training loop stops early: SIGINT / SIGTERM, and time-based checkpoints, decided at step boundaries.

A signal handler only records the signal (`Signals`); the loop reads it after each optimizer step, checkpoints,
says so and exits (`Interrupted`). Saving inside the handler could interrupt a step halfway (half-updated weights,
an optimizer state ahead of them) or, with several processes, enter a collective the others are not in. With
several processes every rank must stop at the same step, since a checkpoint is a collective: `agree` all-reduces
what each rank saw (a signal that reached only one process, a clock that passed the time limit on one) so that all
take the same decision.
"""

from __future__ import annotations

import os
import signal
import threading

import torch

# 128 + the signal's number: the status a shell reports for a process the signal ended (130 Ctrl-C, 143 SIGTERM)
STATUS_BASE = 128


class Interrupted(SystemExit):
    """The run stopped on a signal after writing a checkpoint; its exit status is 128 + the signal's number. A
    SystemExit, so that the CLI ends with that status and no traceback, and a caller (the demo) stops as well."""

    def __init__(self, signum: int, step: int):
        super().__init__(STATUS_BASE + signum)
        self.signum, self.step = signum, step


class Signals:
    """While entered, SIGINT and SIGTERM are recorded in `received` instead of ending the process. A second Ctrl-C
    stops at once (KeyboardInterrupt), losing the steps since the last checkpoint, for a step that takes too long; a
    SIGTERM after a SIGINT does not (torchrun sends its workers SIGTERM after the terminal's SIGINT, and they must
    get to the step's end to checkpoint). A signal the process ignored when entering (SIG_IGN: e.g. SIGINT for a
    background job of a non-interactive shell) stays ignored. Only the main thread can set handlers: elsewhere this
    does nothing."""

    def __init__(self, say: bool = True):
        self.received: int | None = None
        self.say = say  # one process writes the notice
        self._previous: dict[int, object] = {}

    def __enter__(self) -> Signals:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous = signal.getsignal(signum)
                if previous is not signal.SIG_IGN:
                    self._previous[signum] = signal.signal(signum, self.handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def handle(self, signum: int, frame=None) -> None:
        if signum == signal.SIGINT and self.received == signal.SIGINT:
            self.__exit__()
            raise KeyboardInterrupt
        if self.received is None:
            self.received = signum
            if self.say:  # os.write: print's buffered stream may be mid-write in the code this handler interrupted
                os.write(2, f"\n{signal.Signals(signum).name}: stopping after this step, with a checkpoint "
                            "(Ctrl-C again stops at once, without one)\n".encode())


def agree(received: int | None, due: bool, world: int, device, reduce) -> tuple[int | None, bool]:
    """(the signal to stop on, whether a time-based checkpoint is due), the same on every process: the largest
    signal number any process received and whether any process's clock says due. One process: as given."""
    if world == 1:
        return received, due
    both = reduce(torch.tensor([received or 0, int(due)], device=device), reduction="max")  # a collective
    signum, anyone_due = (int(v) for v in both.tolist())
    return signum or None, bool(anyone_due)
