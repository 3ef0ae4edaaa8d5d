"""``check_backend``: run every area of the conformance check against one address."""

from __future__ import annotations

from collections.abc import Mapping

from core.errors import ConfigError
from protocol.conformance import handshake, refusals, rules, states, stops, timeouts
from protocol.conformance.context import Context
from protocol.conformance.report import Report
from protocol.security import ClientKeys

#: The areas, in the order they run (``handshake`` always runs first).
AREAS: tuple[str, ...] = ("states", "refusals", "envelope", "stops", "timeouts")


def check_backend(
    address: str,
    *,
    timeout_s: float = 2.0,
    curve: ClientKeys | None = None,
    areas: tuple[str, ...] = AREAS,
    big_body: bool = True,
    max_wait_s: float = 30.0,
    options: Mapping[str, str | int | float | bool] | None = None,
) -> Report:
    """Check the backend at ``address`` against docs/protocol.md; never raises for a finding.

    The backend must be idle (no client holds a session) and must not be driving a patient:
    the check stimulates, at small amplitudes inside an envelope it derives from the
    advertised capabilities, and breaks every rule on purpose.

    Args:
        address: ZeroMQ endpoint (``tcp://127.0.0.1:5555``, ``ipc:///tmp/backend.sock``).
        timeout_s: Deadline of every reply (a device's step adds its window on top).
        curve: CURVE client keys when the backend requires them.
        areas: Which areas to run after the handshake (see :data:`AREAS`).
        big_body: Whether to send the 64 MiB + 1 byte body of §2.1.
        max_wait_s: Longest wait the loss-of-contact checks may spend; they are skipped when
            the backend's session timeout needs more.
        options: Backend options sent with every ``configure`` (the names the backend
            advertises in ``config_options``, e.g. a small network for a simulator).

    Returns:
        The report: :attr:`Report.ok` is true when nothing failed.

    Raises:
        ConfigError: ``address`` is not a ZeroMQ endpoint, or ``areas`` names an unknown area.
    """
    unknown = sorted(set(areas) - set(AREAS))
    if unknown:
        raise ConfigError(f"Expected areas among {list(AREAS)}, actual unknown {unknown}")
    ctx = Context(address, timeout_s, curve, max_wait_s, Report(address), dict(options or {}))
    try:
        if handshake.run(ctx):
            runners = {
                "states": states.run,
                "refusals": lambda c: refusals.run(c, big=big_body),
                "envelope": rules.run,
                "stops": stops.run,
                "timeouts": timeouts.run,
            }
            for area in AREAS:
                if area in areas:
                    runners[area](ctx)
    finally:
        ctx.close()
    return ctx.report
