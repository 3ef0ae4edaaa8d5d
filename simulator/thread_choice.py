"""``threads="auto"``: pick the faster of one thread and all cores while a network runs.

Every thread count gives the same bits (:mod:`simulator.threaded`), so a network may change
its thread count from one kernel call to the next without changing its results. Whether
threads pay depends on what else the machine does: two threads are faster on two free cores,
and slower when other work leaves the run about one core (they take turns at every barrier).
:class:`ThreadChoice` measures instead of guessing: it tries each candidate for a few calls,
then uses the one with the lower time per step, and keeps trying the other now and then
(:data:`EXPLORE_EVERY` calls), so that a change of load is noticed.
"""

from __future__ import annotations

from core.threads import usable_cores

#: Calls of each candidate before the first choice (the first of them is not counted).
FIRST_TRIES = 3
#: Once chosen, every this many calls the other candidate runs once.
EXPLORE_EVERY = 40
#: Weight of the newest call in each candidate's running mean of seconds per step.
SMOOTHING = 0.25


class ThreadChoice:
    """Chooses the thread count of each kernel call from the measured time per step.

    Args:
        candidates: Thread counts to choose among (default: one and :func:`usable_cores`).

    Example:
        >>> choice = ThreadChoice((1, 2))
        >>> threads = choice.next()
        >>> choice.record(threads, steps=200, seconds=0.002)
    """

    def __init__(self, candidates: tuple[int, ...] | None = None) -> None:
        if candidates is None:
            candidates = tuple(sorted({1, usable_cores()}))
        self.candidates = candidates
        self.seconds_per_step: dict[int, float] = {}
        self.tries = dict.fromkeys(candidates, 0)
        self.calls = 0

    def next(self) -> int:
        """The thread count for the next call."""
        for threads in self.candidates:  # every candidate a few times first, in turn
            if self.tries[threads] < FIRST_TRIES:
                return threads
        best = min(self.candidates, key=lambda t: self.seconds_per_step[t])
        if len(self.candidates) > 1 and self.calls % EXPLORE_EVERY == EXPLORE_EVERY - 1:
            others = [t for t in self.candidates if t != best]
            return others[(self.calls // EXPLORE_EVERY) % len(others)]
        return best

    def record(self, threads: int, steps: int, seconds: float) -> None:
        """Note that a call of ``steps`` steps on ``threads`` threads took ``seconds``."""
        self.calls += 1
        if steps <= 0 or threads not in self.tries:
            return
        self.tries[threads] += 1
        if self.tries[threads] == 1:  # a candidate's first call may compile or allocate: not timed
            return
        per_step = seconds / steps
        old = self.seconds_per_step.get(threads)
        self.seconds_per_step[threads] = (
            per_step if old is None else old + SMOOTHING * (per_step - old)
        )

    @property
    def chosen(self) -> int | None:
        """The candidate with the lower measured time per step (``None`` before any)."""
        known = [t for t in self.candidates if t in self.seconds_per_step]
        return min(known, key=lambda t: self.seconds_per_step[t]) if known else None
