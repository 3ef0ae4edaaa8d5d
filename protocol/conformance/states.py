"""The session state machine of §5: every transition allowed, every other refused."""

from __future__ import annotations

import math
import struct
from typing import Any

import msgpack

from protocol.conformance.context import Context, reply_shape
from protocol.conformance.wire import Peer, Reply, pack_map

AREA = "state machine"


def check_observation(
    ctx: Context, reply: Reply, seq: int, stimulus: dict[str, float] | None, name: str
) -> bool:
    """Record whether ``reply`` is the observation §4.2 requires for this step."""
    if not ctx.expect_reply(AREA, name, "§5", reply, "observation"):
        return False
    fields = reply.get("fields")
    want = list(ctx.welcome["capabilities"]["observation_fields"])
    problems = []
    if not isinstance(fields, dict) or set(fields) != set(want):
        problems.append(f"fields {list(fields) if isinstance(fields, dict) else fields!r}"
                        f" instead of {want}")
    elif not all(isinstance(v, float | int) and not isinstance(v, bool) and math.isfinite(v)
                 for v in fields.values()):
        problems.append(f"non-finite or non-number fields {fields}")
    if reply.get("seq") != seq:
        problems.append(f"seq {reply.get('seq')!r} instead of {seq}")
    if reply.get("applied") != stimulus:
        problems.append(f"applied {reply.get('applied')!r} instead of {stimulus!r}")
    t = reply.get("t_model_ms")
    if not (isinstance(t, float | int) and math.isfinite(t)):
        problems.append(f"t_model_ms {t!r}")
    want_ms = ctx.env.period_ms if ctx.env is not None else None
    if reply.get("duration_ms") != want_ms:
        problems.append(f"duration_ms {reply.get('duration_ms')!r} instead of {want_ms!r}")
    ctx.record(AREA, f"{name}: observation contents", "§4.2 observation", not problems,
               f"seq {seq}, the advertised fields, all finite, applied = the stimulus",
               "; ".join(problems) or "as expected")
    return not problems


def expect_status(
    ctx: Context, area: str, name: str, section: str, reply: Reply, **want: Any
) -> bool:
    """Record whether ``reply`` is a ``status`` whose fields have the ``want`` values."""
    got = {k: reply.get(k) for k in want}
    shape = reply_shape(reply)
    ok = reply.type == "status" and got == want and not shape
    shown = reply.describe() if reply.type != "status" else f"status {got}"
    return ctx.record(area, name, section, ok, f"status {want}",
                      shown + (f" ({shape})" if shape else ""))


def _stop_reason(ctx: Context, p: Peer, sid: str, name: str, section: str) -> None:
    reply = ctx.status(p, sid)
    reason = reply.get("stop_reason")
    ok = isinstance(reason, str) and bool(reason) and len(reason) <= 200
    ctx.record(AREA, name, section, ok, "a non-empty stop_reason of at most 200 characters",
               repr(reason))


def _encodings(ctx: Context, p: Peer, sid: str) -> None:
    """Encodings a decoder MUST accept (§2.1, §12): key order, float32 and integer floats."""
    env = ctx.env
    assert env is not None
    period = env.period_ms
    timeout = ctx.timeout_s + period / 1000.0
    seq = 1

    def step_body(rid: int, duration: float | int) -> dict[str, Any]:
        return {"v": 1, "type": "step", "id": rid, "session_id": sid, "stimulus": None,
                "duration_ms": duration, "want_spikes": False}

    rid = p.fresh_id()
    body = dict(reversed(list(step_body(rid, period).items())))
    seq += 1
    check_observation(ctx, p.send_raw(pack_map(body), rid, timeout), seq, None,
                      "a request with its keys in another order")
    if float(struct.unpack("<f", struct.pack("<f", period))[0]) == period:
        rid = p.fresh_id()
        packed = msgpack.packb(step_body(rid, period), use_bin_type=True, use_single_float=True)
        seq += 1
        check_observation(ctx, p.send_raw(packed, rid, timeout), seq, None,
                          "a float32 step duration")
    else:
        ctx.skip(AREA, "a float32 step duration", "§2.1", "an observation",
                 f"control_period_ms {period!r} is not exact in float32")
    if float(period).is_integer():
        rid = p.fresh_id()
        seq += 1
        check_observation(ctx, p.send_raw(pack_map(step_body(rid, int(period))), rid, timeout),
                          seq, None, "an integer step duration")
    else:
        ctx.skip(AREA, "an integer step duration", "§2.1", "an observation",
                 f"control_period_ms {period!r} is not an integer")


#: Backend kinds whose time advances only inside ``step`` (§4.2 welcome).
LOCKSTEP = ("sim", "replay", "loopback")


def _model_time(
    ctx: Context, p: Peer, sid: str, t_reset: Any, first: Reply, second: Reply
) -> None:
    """Lockstep time (§4.2 welcome, §5 reset): 0 after a ``sim`` reset, moving only in steps."""
    kind = ctx.welcome.get("backend_kind")
    if kind not in LOCKSTEP:
        ctx.skip(AREA, "time advances only inside step", "§4.2 welcome", "lockstep time",
                 f"backend_kind {kind!r} runs in real time")
        return
    if kind == "sim":
        ctx.record(AREA, "reset sets sim time to 0", "§5 reset", t_reset == 0.0, "t_model_ms 0",
                   repr(t_reset))
    t1, t2 = first.get("t_model_ms"), second.get("t_model_ms")
    now = ctx.status(p, sid).get("t_model_ms")
    numbers = all(isinstance(t, int | float) for t in (t_reset, t1, t2))
    ok = numbers and t_reset <= t1 <= t2 and now == t2
    ctx.record(AREA, "time advances only inside step", "§4.2 welcome", ok,
               "t_model_ms non-decreasing over reset and two steps, and status between steps "
               "at the last step's time",
               f"reset {t_reset!r}, steps {t1!r}, {t2!r}, status after {now!r}")


def run(ctx: Context) -> None:
    """Walk every transition of the §5 table on a fresh session."""
    env = ctx.env
    assert env is not None
    with ctx.session_peer() as p:
        sid = ctx.hello(p)
        if sid is None:
            ctx.record(AREA, "hello", "§5", False, "welcome", "no session")
            return
        expect_status(ctx, AREA, "after hello", "§5", ctx.status(p, sid), state="hello", seq=0)
        ctx.expect_error(AREA, "step in state hello", "§5 not running: step",
                         ctx.step(p, sid, None), "bad_state", stopped=False)
        ctx.expect_error(AREA, "reset in state hello", "§4.1 reset",
                         p.request("reset", session_id=sid, seed=None), "bad_state")
        ctx.expect_reply(AREA, "configure in state hello", "§5", ctx.configure(p, sid),
                         "configured")
        expect_status(ctx, AREA, "after configure", "§5", ctx.status(p, sid), state="configured",
                      seq=0, stimulating=False)
        ctx.expect_error(AREA, "step in state configured", "§5 not running: step",
                         ctx.step(p, sid, None), "bad_state", stopped=False)
        ctx.expect_reply(AREA, "configure again in state configured", "§5",
                         ctx.configure(p, sid), "configured")
        expect_status(ctx, AREA, "stop in state configured changes nothing", "§5 stop",
                      p.request("stop", session_id=sid, reason="check"), state="configured")
        expect_status(ctx, AREA, "reset in state configured", "§5 reset",
                      p.request("reset", session_id=sid, seed=None), state="running", seq=0,
                      stimulating=False)
        ctx.expect_error(AREA, "configure in state running", "§5 running: configure",
                         ctx.configure(p, sid), "bad_state")
        t_reset = ctx.status(p, sid).get("t_model_ms")
        first = ctx.step(p, sid, None)
        check_observation(ctx, first, 1, None, "off step")
        on = env.stimulus(env.amp_on)
        second = ctx.step(p, sid, on)
        check_observation(ctx, second, 2, on, "on step after an off step")
        _model_time(ctx, p, sid, t_reset, first, second)
        expect_status(ctx, AREA, "stimulating while on", "§4.2 status", ctx.status(p, sid),
                      state="running", seq=2, stimulating=True)
        expect_status(ctx, AREA, "stop while running", "§5 stop",
                      p.request("stop", session_id=sid, reason="conformance stop"),
                      state="stopped", stimulating=False)
        _stop_reason(ctx, p, sid, "stop records its reason", "§5 safe stop")
        ctx.expect_error(AREA, "step in state stopped", "§5 not running: step",
                         ctx.step(p, sid, None), "bad_state", stopped=False)
        expect_status(ctx, AREA, "stop again is idempotent", "§5 stop",
                      p.request("stop", session_id=sid, reason="again"), state="stopped")
        expect_status(ctx, AREA, "reset in state stopped", "§5 reset",
                      p.request("reset", session_id=sid, seed=None), state="running", seq=0)
        expect_status(ctx, AREA, "reset in state running", "§5 reset",
                      p.request("reset", session_id=sid, seed=None), state="running", seq=0)
        p.request("stop", session_id=sid, reason="check")
        ctx.expect_reply(AREA, "configure in state stopped", "§5", ctx.configure(p, sid),
                         "configured")
        expect_status(ctx, AREA, "reset after reconfigure", "§5 reset",
                      p.request("reset", session_id=sid, seed=None), state="running", seq=0)
        check_observation(ctx, ctx.step(p, sid, None), 1, None, "first step after reset")
        _encodings(ctx, p, sid)
        ctx.expect_reply(AREA, "bye", "§5 bye", p.request("bye", session_id=sid), "status")
        p.session_id = None
        expect_status(ctx, AREA, "after bye the backend is idle", "§5 bye", ctx.status(p),
                      state="idle", session_id=None, stimulating=False)
        ctx.expect_error(AREA, "a request of the ended session", "§5, §6 no_session",
                         p.request("heartbeat", session_id=sid), "no_session")
