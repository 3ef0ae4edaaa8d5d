"""Every way a session can end while stimulating stops the stimulation (§5, §11)."""

from __future__ import annotations

from protocol.conformance.context import Context
from protocol.conformance.states import expect_status

AREA = "stops"


def run(ctx: Context) -> None:
    """``stop``, ``bye`` and a same-peer ``hello`` each stop stimulation."""
    with ctx.session_peer() as p:
        sid = ctx.stimulating(p, AREA, "stop")
        if sid is not None:
            expect_status(ctx, AREA, "stop while stimulating", "§5 stop",
                          p.request("stop", session_id=sid, reason="conformance e-stop"),
                          state="stopped", stimulating=False)
            reason = ctx.status(p, sid).get("stop_reason")
            ctx.record(AREA, "stop records the client's reason", "§5 safe stop",
                       isinstance(reason, str) and "conformance e-stop" in reason,
                       "a stop_reason containing 'conformance e-stop'", repr(reason))
        sid = ctx.stimulating(p, AREA, "a same-peer hello")
        if sid is not None:
            new = ctx.hello(p)
            expect_status(ctx, AREA, "hello again while stimulating", "§5", ctx.status(p, new),
                          state="hello", stimulating=False)
        sid = ctx.stimulating(p, AREA, "bye")
        if sid is not None:
            expect_status(ctx, AREA, "bye while stimulating", "§5 bye",
                          p.request("bye", session_id=sid), state="idle", stimulating=False)
            p.session_id = None
