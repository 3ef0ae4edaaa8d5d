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
    with ctx.session_peer() as p:
        sid = ctx.running(p)
        steps = [] if sid is None else [ctx.step(p, sid, None),
                                        ctx.step(p, sid, env.stimulus(env.amp_on))]
        if sid is None or not all(s.type == "observation" for s in steps):
            ctx.record(AREA, "set-up", "§5", False, "a running session with stimulation on",
                       steps[-1].describe() if steps else "no session")
            return
        end = time.monotonic() + 1.5 * timeout_s
        alive = True
        while time.monotonic() < end and alive:
            time.sleep(beat_s / 2.0)
            alive = p.request("heartbeat", session_id=sid).type == "status"
        expect_status(ctx, AREA, "heartbeats keep the session", "§7.2", ctx.status(p, sid),
                      state="running", session_id=sid)

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
                   isinstance(reason, str) and bool(reason), "a non-empty stop_reason",
                   repr(reason))
        ctx.expect_error(AREA, "the timed-out session is gone", "§6 no_session",
                         p.request("heartbeat", session_id=sid), "no_session")
        p.session_id = None
        sid2 = ctx.hello(monitor)
        ctx.record(AREA, "the backend is free for another client", "§7.3", sid2 is not None,
                   "a welcome", "welcome" if sid2 else "refused")
        if sid2 is not None:
            monitor.request("bye", session_id=sid2)
        monitor.close()
