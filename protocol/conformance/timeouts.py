"""Loss of contact (§7.2, §7.3): heartbeats keep a session, silence ends it with a safe stop.

These checks wait for real time to pass (the backend's ``session_timeout_ms``), so they are
skipped when that is longer than the run allows (``max_wait_s``). Waits have generous bounds
(twice the timeout plus a second, the outer bound of §7.3): nothing here measures how fast a
backend is, only that it stops.
"""

from __future__ import annotations

import time

from protocol.conformance.context import Context
from protocol.conformance.states import expect_status

AREA = "loss of contact"


def run(ctx: Context) -> None:
    """Heartbeats, then silence, on a session with stimulation on."""
    env = ctx.env
    assert env is not None
    timeout_s = float(ctx.welcome["session_timeout_ms"]) / 1000.0
    beat_s = float(ctx.welcome["heartbeat_interval_ms"]) / 1000.0
    if 3.5 * timeout_s + 1.0 > ctx.max_wait_s:
        why = (f"session_timeout_ms is {timeout_s * 1000:g} ms: the checks would wait about "
               f"{3.5 * timeout_s + 1:.0f} s, more than --max-wait-s {ctx.max_wait_s:g}")
        ctx.skip(AREA, "heartbeats keep the session", "§7.2", "session kept", why)
        ctx.skip(AREA, "silence ends the session with a safe stop", "§7.3", "idle", why)
        return
    lease_s = env.extra["lease_periods"] * env.period_ms / 1000.0
    real_time = ctx.welcome.get("backend_kind") not in ("sim", "replay", "loopback")
    with ctx.session_peer() as p:
        sid = ctx.stimulating(p, AREA, "the loss-of-contact checks")
        if sid is None:
            return
        # Heartbeats only, for longer than the session timeout and than the lease.
        end = time.monotonic() + max(1.5 * timeout_s, 2.0 * lease_s + 0.5)
        alive = True
        while time.monotonic() < end and alive:
            time.sleep(beat_s / 2.0)
            alive = p.request("heartbeat", session_id=sid).type == "status"
        status = ctx.status(p, sid)
        expect_status(ctx, AREA, "heartbeats keep the session", "§7.2", status,
                      session_id=sid)
        if real_time:
            # A real-time device's lease is renewed by steps (§7.3, docs/device-protocol.md):
            # without them the output stops, and the backend must say so.
            expect_status(ctx, AREA, "heartbeats without steps: the lease lapses and the "
                          "status says stimulation stopped", "§4.2 status, §7.3", status,
                          state="stopped", stimulating=False)
            sid = ctx.stimulating(p, AREA, "the loss-of-contact checks")
            if sid is None:
                return
        else:
            expect_status(ctx, AREA, "heartbeats without steps: a lockstep stimulus stays in "
                          "force", "§4.2 welcome", status, state="running", stimulating=True)

        before = ctx.status(p, sid).get("stop_reason")
        time.sleep(timeout_s)  # silence from the controller
        monitor = ctx.peer()
        deadline = time.monotonic() + timeout_s + 1.0
        status = ctx.status(monitor)
        while status.get("state") != "idle" and time.monotonic() < deadline:
            time.sleep(0.05)
            status = ctx.status(monitor)
        expect_status(ctx, AREA, "silence ends the session with a safe stop", "§5, §7.3", status,
                      state="idle", session_id=None, stimulating=False)
        reason = status.get("stop_reason")
        ctx.record(AREA, "the time-out is the stop reason", "§5 safe stop",
                   isinstance(reason, str) and bool(reason) and reason != before,
                   f"a new stop_reason (it was {before!r} before the silence)", repr(reason))
        ctx.expect_error(AREA, "the timed-out session is gone", "§6 no_session",
                         p.request("heartbeat", session_id=sid), "no_session")
        p.session_id = None
        sid2 = ctx.hello(monitor)
        ctx.record(AREA, "the backend is free for another client", "§7.3", sid2 is not None,
                   "a welcome", "welcome" if sid2 else "refused")
        if sid2 is not None:
            monitor.request("bye", session_id=sid2)
        monitor.close()
