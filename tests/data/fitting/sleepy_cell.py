"""A reference cell whose simulation hangs when soma.gl_hh is above 0.001 (timeout test)."""

import time

from neuron import h

from fitting.reference import ReferenceCell


class SleepyCell(ReferenceCell):
    def __init__(self) -> None:
        super().__init__()
        self.handler = h.FInitializeHandler(self._maybe_hang)

    def _maybe_hang(self) -> None:
        if self.soma(0.5).gl_hh > 0.001:
            time.sleep(600)


def build() -> SleepyCell:
    return SleepyCell()
