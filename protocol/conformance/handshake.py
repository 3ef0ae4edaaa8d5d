"""Handshake: ``hello``/``welcome``, versions, capabilities, one controlling session (§3–§5)."""

from __future__ import annotations

import math
import re
from typing import Any, TypeGuard

from protocol.conformance.context import Context
from protocol.conformance.envelope import SetupError, derive_envelope, envelope_hash
from protocol.conformance.wire import pack_map
from protocol.observables import MEASURABLE_FIELDS, is_device_backend, unobservable

AREA = "handshake"
_SESSION = re.compile(r"^[0-9a-f]{32}$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
KINDS = ("sim", "serial", "replay", "loopback")


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _capability_problems(caps: Any) -> list[str]:
    """What is wrong with a ``capabilities`` map (§3.1, §3.2); empty when nothing."""
    if not isinstance(caps, dict):
        return [f"capabilities is {type(caps).__name__}, not a map"]
    problems: list[str] = []
    want = {"stim_params", "observation_fields", "control_period_ms", "min_duration_ms",
            "max_duration_ms", "supports_spikes", "config_options"}
    if set(caps) != want:
        problems.append(f"keys {sorted(caps)} instead of {sorted(want)}")
        return problems
    params = caps["stim_params"]
    if not isinstance(params, list) or not 1 <= len(params) <= 64:
        problems.append("stim_params is not a list of 1-64 ParamSpecs")
        return problems
    names = []
    for spec in params:
        if not isinstance(spec, dict) or set(spec) != {"name", "unit", "role", "min", "max"}:
            problems.append(f"ParamSpec {spec!r} lacks name/unit/role/min/max")
            continue
        names.append(spec["name"])
        if not isinstance(spec["name"], str) or not _NAME.match(spec["name"]):
            problems.append(f"parameter name {spec['name']!r} is not a §2.3 name")
        if spec["role"] not in ("amplitude", "frequency", "pulse_width", "other"):
            problems.append(f"role {spec['role']!r} of {spec['name']!r}")
        if not (_number(spec["min"]) and _number(spec["max"]) and spec["min"] <= spec["max"]):
            problems.append(f"range [{spec['min']!r}, {spec['max']!r}] of {spec['name']!r}")
    if len(set(names)) != len(names):
        problems.append(f"repeated parameter names {names}")
    fields = caps["observation_fields"]
    if not isinstance(fields, list) or len(set(fields)) != len(fields) or not all(
        isinstance(f, str) and _NAME.match(f) for f in fields
    ):
        problems.append(f"observation_fields {fields!r} are not distinct names")
    lo, period, hi = caps["min_duration_ms"], caps["control_period_ms"], caps["max_duration_ms"]
    if not (all(map(_number, (lo, period, hi))) and 1e-6 <= lo <= period <= hi <= 3.6e6):
        problems.append(f"durations: not 1e-6 <= min {lo!r} <= period {period!r} <= max {hi!r}")
    if not isinstance(caps["supports_spikes"], bool):
        problems.append(f"supports_spikes {caps['supports_spikes']!r} is not a bool")
    if not isinstance(caps["config_options"], list):
        problems.append(f"config_options {caps['config_options']!r} is not a list")
    return problems


def _check_welcome(ctx: Context, reply_body: dict[str, Any], request_id: int) -> None:
    section = "§4.2 welcome"
    w = reply_body
    problems = []
    if w.get("id") != request_id:
        problems.append(f"id {w.get('id')!r} instead of {request_id}")
    if not isinstance(w.get("session_id"), str) or not _SESSION.match(w["session_id"]):
        problems.append(f"session_id {w.get('session_id')!r} is not 32 lower-case hex digits")
    if w.get("backend_kind") not in KINDS:
        problems.append(f"backend_kind {w.get('backend_kind')!r} not in {KINDS}")
    name = w.get("backend_name")
    if not isinstance(name, str) or not 1 <= len(name) <= 64:
        problems.append(f"backend_name {name!r} is not 1-64 characters")
    timeout = w.get("session_timeout_ms")
    beat = w.get("heartbeat_interval_ms")
    if not (_number(timeout) and 1.0 <= timeout <= 3.6e6):
        problems.append(f"session_timeout_ms {timeout!r} not in [1, 3.6e6]")
    elif not (_number(beat) and 0.1 <= beat <= timeout):
        problems.append(f"heartbeat_interval_ms {beat!r} not in [0.1, {timeout}]")
    ctx.record(AREA, "welcome fields", section, not problems,
               "every welcome field present and in range", "; ".join(problems) or "as expected")
    caps_problems = _capability_problems(w.get("capabilities"))
    ctx.record(AREA, "capabilities", "§3.1, §3.2", not caps_problems,
               "well-formed capabilities", "; ".join(caps_problems) or "as expected")
    kind = w.get("backend_kind")
    if not caps_problems and isinstance(kind, str) and is_device_backend(kind):
        bad = unobservable(w["capabilities"]["observation_fields"])
        ctx.record(AREA, "a device advertises only measurable observation fields", "§3.5",
                   not bad, f"fields among {sorted(MEASURABLE_FIELDS)}",
                   f"unobservable {list(bad)}" if bad else "as expected")
    if not caps_problems:
        want_hash = envelope_hash(w["capabilities"]["stim_params"], {})
        ctx.record(AREA, "limits_hash is the hash of the advertised limits", "§3.3",
                   w.get("limits_hash") == want_hash, want_hash, repr(w.get("limits_hash")))


def run(ctx: Context) -> bool:
    """Run the handshake checks; return whether a session could be opened and configured."""
    with ctx.session_peer() as p:
        request_id = p.fresh_id()
        p.send_frames([pack_map({"v": 1, "type": "hello", "id": request_id,
                                 "client_name": "neuroloop-check"})])
        reply = p.receive(accept=(request_id,))
        if not ctx.expect_reply(AREA, "hello is answered with welcome", "§4.1", reply, "welcome"):
            return False
        assert reply.body is not None
        ctx.welcome = reply.body
        p.session_id = reply.body.get("session_id")
        kind, name = reply.body.get("backend_kind"), reply.body.get("backend_name")
        ctx.report.backend = f"{kind}/{name}"
        _check_welcome(ctx, reply.body, request_id)
        try:
            ctx.env = derive_envelope(reply.body["capabilities"])
        except (SetupError, KeyError, TypeError, ValueError) as err:
            ctx.record(AREA, "a test envelope fits the capabilities", "§3.3", False,
                       "capabilities that leave room for a valid envelope", str(err))
            return False

        for label, version in (("v = 2", 2), ("v = 1.0", 1.0), ("v = true", True),
                               ('v = "1"', "1"), ("no v", None)):
            rid = p.fresh_id()
            body: dict[str, Any] = {"type": "get_status", "id": rid, "session_id": None}
            if version is not None:
                body["v"] = version
            ctx.expect_error(AREA, f"{label} is refused", "§2.2, §2.5 #5",
                             p.send_raw(pack_map(body), rid), "unsupported_version",
                             request_id=rid)

        vector = bytes.fromhex(  # 68 bytes, session 0123456789abcdef0123456789abcdef
            "84a17601a474797065a9686561727462656174a2696407aa73657373696f6e5f6964d920"
            "3031323334353637383961626364656630313233343536373839616263646566"
        )
        ctx.expect_error(AREA, "the heartbeat test vector of §12 (an unknown session)",
                         "§12, §6 no_session", p.send_raw(vector, 7), "no_session",
                         request_id=7)
        first = p.session_id
        assert first is not None
        sid = ctx.hello(p)
        ctx.record(AREA, "hello again from the same peer starts a new session", "§5",
                   sid is not None and sid != first, "a welcome with a new session_id",
                   f"session_id {sid!r} (was {first!r})")
        ctx.expect_error(AREA, "the replaced session is gone", "§5, §6 no_session",
                         p.request("heartbeat", session_id=first), "no_session")
        ctx.expect_error(AREA, "an unknown session id", "§5, §6 no_session",
                         p.request("heartbeat", session_id="0" * 32), "no_session")
        if sid is None:
            return False
        ctx.expect_reply(AREA, "heartbeat", "§4.1, §7.2",
                         p.request("heartbeat", session_id=sid), "status")

        other = ctx.peer()
        ctx.expect_error(AREA, "hello from another peer while a session is held", "§5, §6 busy",
                         other.request("hello", client_name="intruder"), "busy")
        ctx.expect_error(AREA, "the session's id from another connection", "§5, §6 busy",
                         other.request("heartbeat", session_id=sid), "busy")
        status = ctx.status(other)
        ok = status.type == "status" and status.get("state") == "hello"
        ctx.record(AREA, "get_status from any connection", "§4.1, §5", ok,
                   "status with state hello", f"{status.describe()}, state {status.get('state')!r}")
        status = ctx.status(other, first)
        ok = status.type == "status" and status.get("session_id") == sid
        ctx.record(AREA, "get_status with an ended session's id", "§5", ok,
                   "status of the active session", f"{status.describe()}, session "
                   f"{status.get('session_id')!r}")
        ctx.expect_error(AREA, "get_status with the active id from another connection",
                         "§5, §6 busy", ctx.status(other, sid), "busy")
        other.close()

        configured = ctx.configure(p, sid)
        if not ctx.expect_reply(AREA, "configure with a valid envelope", "§4.1", configured,
                                "configured"):
            return False
        env = ctx.env
        ctx.record(AREA, "configured echoes the envelope hash", "§4.2 configured",
                   configured.get("envelope_hash") == env.hash, env.hash,
                   repr(configured.get("envelope_hash")))
        names = [s.get("name") for s in configured.get("limits") or [] if isinstance(s, dict)]
        want = [s["name"] for s in env.limits]
        ctx.record(AREA, "configured limits in advertised order", "§4.2 configured",
                   names == want, str(want), str(names))
        ctx.record(AREA, "configured control period", "§4.2 configured",
                   configured.get("control_period_ms") == env.period_ms, f"{env.period_ms}",
                   repr(configured.get("control_period_ms")))
        return True
