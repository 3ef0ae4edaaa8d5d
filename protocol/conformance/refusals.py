"""Refusals: malformed bodies, wrong headers and fields, bad envelopes, refused steps (§2, §5, §6).

Malformed bodies are built byte by byte where the point is a malformation no msgpack encoder
would produce (a repeated key, invalid UTF-8, trailing bytes, a huge map header).
"""

from __future__ import annotations

import math
import struct
from typing import Any

import msgpack

from protocol.conformance.context import Context
from protocol.conformance.states import expect_status
from protocol.conformance.wire import Peer, pack_map
from protocol.envelope.floors import timing_for

AREA = "refusals"
#: A body one byte over the 64 MiB limit of §2.1.
OVERSIZE_BYTES = 67_108_864 + 1


def _str(text: str) -> bytes:
    packed: bytes = msgpack.packb(text, use_bin_type=True)
    return packed


def _undecodable(ctx: Context, p: Peer, big: bool) -> None:
    """Bodies that fail checks 2-4 of §2.5: ``bad_message`` with id 0."""
    status = {"v": 1, "type": "get_status", "id": 7, "session_id": None}
    repeated = b"\x85" + b"".join(_str(k) + msgpack.packb(v) for k, v in status.items())
    repeated += _str("v") + msgpack.packb(1)
    bad_utf8 = (b"\x84" + _str("v") + b"\x01" + _str("type") + b"\xa3\xff\xfe\xfd"
                + _str("id") + b"\x07" + _str("session_id") + b"\xc0")
    huge_map = b"\xdf" + struct.pack(">I", 5_000_000) + b"\xc0" * 5000
    deep: Any = None
    for _ in range(20):
        deep = [deep]
    cases: list[tuple[str, bytes, int | None]] = [
        ("a byte that is no msgpack (0xc1)", b"\xc1", 0),
        ("a truncated map", pack_map(status)[:-3], 0),
        ("trailing bytes after the map", pack_map(status) + b"\x00", 0),
        ("an array instead of a map", msgpack.packb([1, "get_status", 7]), 0),
        ("a number instead of a map", msgpack.packb(7), 0),
        ("a repeated key", repeated, 0),
        ("invalid UTF-8 in a str", bad_utf8, 0),
        ("a map header of 5 000 000 entries", huge_map, 0),
        ("nesting deeper than 8", pack_map({**status, "session_id": deep}), None),
        ("an empty body", b"", 0),
    ]
    if big:
        cases.append(("a body over 64 MiB", b"\xc4" + b"\x00" * (OVERSIZE_BYTES - 1), 0))
    for label, body, want_id in cases:
        timeout = ctx.timeout_s + (5.0 if len(body) > 1_000_000 else 0.0)
        ctx.expect_error(AREA, label, "§2.1, §2.4, §2.5 #2-4", p.send_raw(body, 7, timeout),
                         "bad_message", request_id=want_id)


def _bad_headers(ctx: Context, p: Peer) -> None:
    """Checks 5-11 of §2.5 with their codes and reply ids."""
    def body(rid: object, **fields: Any) -> dict[str, Any]:
        return {"v": 1, "type": "get_status", "id": rid, "session_id": None, **fields}

    rid = 4242
    cases: list[tuple[str, dict[Any, Any], str, int]] = [
        ("no type", {k: v for k, v in body(rid).items() if k != "type"}, "bad_message", rid),
        ("type as bin", body(rid, type=b"get_status"), "bad_message", rid),
        ("type as a number", body(rid, type=3), "bad_message", rid),
        ("an unknown type", body(rid, type="frobnicate"), "unknown_type", rid),
        ("a reply type sent as a request", body(rid, type="status"), "unknown_type", rid),
        ("an integer key", {**body(rid), 5: 1}, "bad_message", rid),
        ("a missing field", {k: v for k, v in body(rid).items() if k != "session_id"},
         "bad_message", rid),
        ("an unknown field", body(rid, colour="red"), "bad_message", rid),
        ("a negative id", body(-1), "out_of_range", 0),
        ("a float id", body(1.0), "bad_message", 0),
        ("a boolean id", body(True), "bad_message", 0),
        ("a string id", body("1"), "bad_message", 0),
        ("a session id of 31 digits", body(rid, session_id="0" * 31), "bad_message", rid),
        ("an ext value in a field", body(rid, session_id=msgpack.ExtType(1, b"\x00")),
         "bad_message", rid),
        ("a boolean for a float (step duration)",
         {"v": 1, "type": "step", "id": rid, "session_id": "0" * 32, "stimulus": None,
          "duration_ms": True, "want_spikes": False}, "bad_message", rid),
        ("a float for an integer (reset seed 3.0)",
         {"v": 1, "type": "reset", "id": rid, "session_id": "0" * 32, "seed": 3.0},
         "bad_message", rid),
        ("0 and 1 for a boolean (want_spikes)",
         {"v": 1, "type": "step", "id": rid, "session_id": "0" * 32, "stimulus": None,
          "duration_ms": 20.0, "want_spikes": 0}, "bad_message", rid),
        ("NaN step duration",
         {"v": 1, "type": "step", "id": rid, "session_id": "0" * 32, "stimulus": None,
          "duration_ms": float("nan"), "want_spikes": False}, "non_finite", rid),
        ("+Inf step duration",
         {"v": 1, "type": "step", "id": rid, "session_id": "0" * 32, "stimulus": None,
          "duration_ms": float("inf"), "want_spikes": False}, "non_finite", rid),
        ("a step duration of 0 ms",
         {"v": 1, "type": "step", "id": rid, "session_id": "0" * 32, "stimulus": None,
          "duration_ms": 0.0, "want_spikes": False}, "out_of_range", rid),
        ("a negative reset seed",
         {"v": 1, "type": "reset", "id": rid, "session_id": "0" * 32, "seed": -1},
         "out_of_range", rid),
        ("a stop reason of 201 characters",
         {"v": 1, "type": "stop", "id": rid, "session_id": "0" * 32, "reason": "x" * 201},
         "bad_message", rid),
        ("a client name of 65 characters",
         {"v": 1, "type": "hello", "id": rid, "client_name": "x" * 65}, "bad_message", rid),
        ("an unknown key of 7000 characters (the error stays bounded)",
         body(rid, **{"k" * 7000: 1}), "bad_message", rid),
    ]
    for label, fields, code, want_id in cases:
        ctx.expect_error(AREA, label, "§2.2, §2.5 #5-11", p.send_raw(pack_map(fields), want_id),
                         code, request_id=want_id)


def _multipart(ctx: Context, p: Peer) -> None:
    rid = p.fresh_id()
    p.send_frames([pack_map({"v": 1, "type": "get_status", "id": rid, "session_id": None}),
                   b"second frame"])
    extra = p.receive(timeout_s=min(0.3, ctx.timeout_s), accept=(rid, 0))
    ctx.record(AREA, "a message of two frames is dropped", "§1, §2.5 #1", extra.raw is None,
               "no reply", extra.describe())
    ctx.expect_reply(AREA, "the next request is answered", "§1", ctx.status(p), "status")


def _configure_refusals(ctx: Context) -> None:
    env = ctx.env
    assert env is not None
    caps = ctx.welcome["capabilities"]
    amp, freq, _ = env.names
    with ctx.session_peer() as p:
        sid = ctx.hello(p)
        if sid is None:
            ctx.record(AREA, "hello", "§5", False, "welcome", "no session")
            return

        def limits_with(name: str, **changes: Any) -> list[dict[str, Any]]:
            return [{**s, **changes} if s["name"] == name else s for s in env.limits]

        adv_amp = env.advertised[amp]
        extra_missing = {k: v for k, v in env.extra.items() if k != "soft_start_s"}
        cases: list[tuple[str, dict[str, Any]]] = [
            ("a hash that does not match", env.wire(hash="0" * 64)),
            ("an extra key missing (soft_start_s)", env.wire(extra=extra_missing)),
            ("an unknown extra key", env.wire(extra={**env.extra, "q_max_uc": 1.0})),
            ("a soft start of 0 s (under the floor)", env.wire(extra={**env.extra,
                                                                       "soft_start_s": 0.0})),
            ("an amplitude limit wider than advertised",
             env.wire(limits=limits_with(amp, max=float(adv_amp["max"]) * 2.0 + 1.0))),
            ("the amplitude in another unit",
             env.wire(limits=limits_with(amp, unit="mA" if adv_amp["unit"] != "mA" else "mV"))),
            ("the frequency with another role",
             env.wire(limits=limits_with(freq, role="other"))),
            ("a parameter missing", env.wire(limits=[s for s in env.limits if s["name"] != freq])),
        ]
        for label, envelope in cases:
            ctx.expect_error(AREA, f"configure: {label}", "§3.3, §6 envelope_rejected",
                             ctx.configure(p, sid, envelope=envelope), "envelope_rejected")
        # 20 periods (the most lease_periods may be) of a period long enough to exceed the
        # domain's absolute lease bound, rounded up to whole control periods.
        periods = 20.0
        bound_ms = timing_for(env.domain).lease_ms[1]
        long_ms = max(env.period_ms, math.ceil(1.2 * bound_ms / periods / env.period_ms)
                      * env.period_ms)
        name = "configure: a lease too long in absolute time"
        if periods * long_ms > bound_ms and long_ms <= float(caps["max_duration_ms"]):
            long_lease = env.wire(extra={**env.extra, "lease_periods": periods,
                                         "watchdog_periods": periods})
            ctx.expect_error(AREA, name, "§3.3, §6 envelope_rejected",
                             ctx.configure(p, sid, envelope=long_lease,
                                           control_period_ms=long_ms), "envelope_rejected")
        else:
            ctx.skip(AREA, name, "§3.3", "envelope_rejected",
                     f"no advertised duration reaches {bound_ms / periods:g} ms, so no lease "
                     f"can exceed the {env.domain} domain's bound of {bound_ms:g} ms")
        ctx.expect_error(AREA, "configure: an unknown option", "§6 bad_config",
                         ctx.configure(p, sid, options={"no_such_option_x": 1}), "bad_config")
        hi = float(caps["max_duration_ms"])
        period = hi * 2.0 if hi * 2.0 <= 3.6e6 else float(caps["min_duration_ms"]) / 2.0
        ctx.expect_error(AREA, "configure: a control period outside the durations",
                         "§6 bad_config", ctx.configure(p, sid, control_period_ms=period),
                         "bad_config")
        ctx.expect_error(AREA, "configure: control period 0 ms", "§4.1, §2.5 #11",
                         ctx.configure(p, sid, control_period_ms=0.0), "out_of_range")
        expect_status(ctx, AREA, "a refused configure leaves the state", "§6 bad_config",
                      ctx.status(p, sid), state="hello")


def _stopping_refusals(ctx: Context) -> None:
    """While running and stimulating, each refusal stops stimulation (§5, §5.1)."""
    env = ctx.env
    assert env is not None
    caps = ctx.welcome["capabilities"]
    amp = env.names[0]
    on = env.stimulus(env.amp_on)
    hi = float(caps["max_duration_ms"])
    long_ms = hi * 2.0 if hi * 2.0 <= 3.6e6 else float(caps["min_duration_ms"]) / 2.0
    missing = {k: v for k, v in on.items() if k != amp}
    adv_max = float(env.advertised[amp]["max"])
    cases: list[tuple[str, str, Any, str, float | None]] = [
        ("a step duration outside the durations", "§5.1 #2", on, "out_of_range", long_ms),
        ("a stimulus without the amplitude", "§5.1 #4", missing, "invalid_stimulus", None),
        ("a stimulus with an extra key", "§5.1 #4", {**on, "colour_hz": 1.0},
         "invalid_stimulus", None),
        ("an amplitude over the advertised range", "§5.1 #5", {**on, amp: adv_max * 1.5 + 1.0},
         "limit_exceeded", None),
        ("a NaN amplitude", "§2.1, §5", {**on, amp: float("nan")}, "non_finite", None),
        ("an -Inf amplitude", "§2.1, §5", {**on, amp: float("-inf")}, "non_finite", None),
    ]
    with ctx.session_peer() as p:
        for label, section, stimulus, code, duration in cases:
            sid = ctx.stimulating(p, AREA, label)
            if sid is None:
                continue
            ctx.expect_error(AREA, f"running: {label}", section,
                             ctx.step(p, sid, stimulus, duration), code, stopped=True)
            expect_status(ctx, AREA, f"running: {label}: stimulation stopped", "§5",
                          ctx.status(p, sid), state="stopped", stimulating=False)
        label = "an undecodable request of the controller"
        sid = ctx.stimulating(p, AREA, label)
        if sid is not None:
            ctx.expect_error(AREA, f"running: {label}", "§5", p.send_raw(b"\xc1", 0),
                             "bad_message", stopped=True)
            expect_status(ctx, AREA, f"running: {label}: stimulation stopped", "§5",
                          ctx.status(p, sid), state="stopped", stimulating=False)
        label = "a repeated key inside the stimulus map"
        sid = ctx.stimulating(p, AREA, label)
        if sid is not None:
            head = {"v": 1, "type": "step", "id": 9, "session_id": sid,
                    "duration_ms": env.period_ms, "want_spikes": False}
            stim = b"".join(_str(k) + msgpack.packb(v) for k, v in on.items())
            stim = bytes([0x80 | (len(on) + 1)]) + stim + _str(amp) + msgpack.packb(on[amp])
            body = pack_map(head)
            body = bytes([body[0] + 1]) + body[1:] + _str("stimulus") + stim
            ctx.expect_error(AREA, f"running: {label}", "§2.1, §2.5 #3, §5",
                             p.send_raw(body, 9), "bad_message", stopped=True, request_id=0)
            expect_status(ctx, AREA, f"running: {label}: stimulation stopped", "§5",
                          ctx.status(p, sid), state="stopped", stimulating=False)
        label = "want_spikes"
        sid = ctx.stimulating(p, AREA, label)
        if sid is not None:
            reply = p.request("step", timeout_s=ctx.timeout_s + env.period_ms / 1000.0,
                              session_id=sid, stimulus=on, duration_ms=env.period_ms,
                              want_spikes=True)
            if caps["supports_spikes"]:
                spikes = reply.get("spikes")
                ok = (reply.type == "observation" and isinstance(spikes, dict)
                      and isinstance(spikes.get("times_ms"), bytes)
                      and isinstance(spikes.get("neurons"), bytes)
                      and len(spikes["times_ms"]) // 8 == len(spikes["neurons"]) // 4)
                ctx.record(AREA, "want_spikes where supported", "§3.4, §4.2", ok,
                           "an observation with a SpikeWindow", reply.describe())
            else:
                ctx.expect_error(AREA, "want_spikes where not supported", "§5.1 #3", reply,
                                 "bad_message", stopped=True)
        label = "requests from others"
        sid = ctx.stimulating(p, AREA, label)
        if sid is not None:
            ctx.expect_error(AREA, "running: a step with another session id", "§5 no_session",
                             ctx.step(p, "f" * 32, on), "no_session", stopped=False)
            other = ctx.peer()
            ctx.expect_error(AREA, "running: the session's step from another connection",
                             "§5 busy", ctx.step(other, sid, on), "busy", stopped=False)
            ctx.expect_error(AREA, "running: an undecodable request of another connection",
                             "§5", other.send_raw(b"\xc1", 0), "bad_message", stopped=False)
            other.close()
            expect_status(ctx, AREA, "running: others' requests do not stop stimulation", "§5",
                          ctx.status(p, sid), state="running", stimulating=True)


def run(ctx: Context, *, big: bool = True) -> None:
    """Run every refusal check (``big`` adds the 64 MiB body)."""
    with ctx.session_peer() as p:
        _undecodable(ctx, p, big)
        _bad_headers(ctx, p)
        _multipart(ctx, p)
    _configure_refusals(ctx)
    _stopping_refusals(ctx)
