"""What every area of the check shares: connections, the welcome, the envelope and the report."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from protocol.conformance.envelope import TestEnvelope
from protocol.conformance.report import CheckResult, Outcome, Report
from protocol.conformance.wire import Peer, Reply
from protocol.security import ClientKeys

_HEADER = ("v", "type", "id")
#: The fields of each reply type (§4.2), besides the header.
REPLY_FIELDS: dict[str, frozenset[str]] = {
    "welcome": frozenset({"session_id", "backend_kind", "backend_name", "capabilities",
                          "limits_hash", "session_timeout_ms", "heartbeat_interval_ms"}),
    "configured": frozenset({"session_id", "envelope_hash", "limits", "control_period_ms"}),
    "observation": frozenset({"seq", "t_model_ms", "duration_ms", "fields", "applied",
                              "spikes"}),
    "status": frozenset({"state", "session_id", "seq", "t_model_ms", "stimulating",
                         "stop_reason"}),
    "error": frozenset({"code", "message", "stopped"}),
}
_STATES = ("idle", "hello", "configured", "running", "stopped")


def reply_shape(reply: Reply) -> str:
    """What is wrong with a reply's fields (§4.2, §2.3); "" when nothing."""
    body = reply.body
    if body is None or reply.type not in REPLY_FIELDS:
        return ""
    want = REPLY_FIELDS[reply.type] | set(_HEADER)
    if set(body) != want:
        missing = sorted(want - set(body))
        unknown = sorted(map(str, set(body) - want))
        return f"{reply.type} fields: missing {missing}, unknown {unknown}"
    if reply.type == "error":
        message = body["message"]
        if not isinstance(message, str) or len(message) > 2000:
            length = len(message) if isinstance(message, str) else type(message).__name__
            return f"message of {length} characters, not text of at most 2000"
        if not isinstance(body["stopped"], bool):
            return f"stopped is {body['stopped']!r}, not a bool"
    if reply.type == "status":
        problems = []
        if body["state"] not in _STATES:
            problems.append(f"state {body['state']!r}")
        if not isinstance(body["seq"], int) or isinstance(body["seq"], bool) or body["seq"] < 0:
            problems.append(f"seq {body['seq']!r}")
        if not isinstance(body["stimulating"], bool):
            problems.append(f"stimulating {body['stimulating']!r}")
        reason = body["stop_reason"]
        if not isinstance(reason, str) or len(reason) > 200:
            problems.append("stop_reason is not a str of at most 200 characters")
        if (body["state"] == "idle") != (body["session_id"] is None):
            problems.append(f"session_id {body['session_id']!r} in state {body['state']!r}")
        return "status: " + ", ".join(problems) if problems else ""
    return ""


@dataclass
class Context:
    """The state of one conformance run.

    Args:
        address: The backend's ZeroMQ endpoint.
        timeout_s: Deadline of every reply.
        curve: CURVE client keys, if the backend needs them.
        max_wait_s: Longest the timeout checks may wait for a session to time out.
        report: Where results go.
        options: The ``configure`` options of every session.
    """

    address: str
    timeout_s: float
    curve: ClientKeys | None
    max_wait_s: float
    report: Report
    options: dict[str, Any] = field(default_factory=dict)
    welcome: dict[str, Any] = field(default_factory=dict)
    env: TestEnvelope | None = None
    _peers: list[Peer] = field(default_factory=list)

    # ----------------------------------------------------------------------- results

    def record(
        self, area: str, name: str, section: str, passed: bool, expected: str, got: str
    ) -> bool:
        """Add a pass or fail; return ``passed``."""
        outcome: Outcome = "pass" if passed else "fail"
        self.report.results.append(CheckResult(area, name, section, outcome, expected, got))
        return passed

    def skip(self, area: str, name: str, section: str, expected: str, why: str) -> None:
        """Add a skipped check with the reason."""
        self.report.results.append(CheckResult(area, name, section, "skip", expected, why))

    def expect_error(
        self,
        area: str,
        name: str,
        section: str,
        reply: Reply,
        code: str | tuple[str, ...],
        *,
        stopped: bool | None = None,
        request_id: int | None = None,
    ) -> bool:
        """Record whether ``reply`` is an ``error`` with ``code`` (and ``stopped``, ``id``)."""
        codes = (code,) if isinstance(code, str) else code
        want = f"error {' or '.join(codes)}"
        if stopped is not None:
            want += f" with stopped={stopped}"
        if request_id is not None:
            want += f" and id {request_id}"
        ok = reply.type == "error" and reply.code in codes and not reply.problem
        shape = reply_shape(reply)
        if ok and shape:
            ok = False
        if ok and stopped is not None:
            ok = reply.get("stopped") is stopped
        if ok and request_id is not None:
            ok = reply.id == request_id
        got = reply.describe()
        if reply.body is not None and request_id is not None:
            got += f", id {reply.id}"
        if shape:
            got += f" ({shape})"
        return self.record(area, name, section, ok, want, got)

    def expect_reply(
        self, area: str, name: str, section: str, reply: Reply, type_: str, detail: str = ""
    ) -> bool:
        """Record whether ``reply`` is a well-formed ``type_`` reply."""
        shape = reply_shape(reply)
        ok = reply.type == type_ and not reply.problem and not shape
        problem = "; ".join(p for p in (reply.problem, shape) if p)
        got = reply.describe() + (f" ({problem})" if problem else "")
        return self.record(area, name, section, ok, f"a {type_} reply{detail}", got)

    # --------------------------------------------------------------------- sessions

    def peer(self) -> Peer:
        """A new connection (a new ROUTER identity: another peer for the backend)."""
        p = Peer(self.address, self.timeout_s, self.curve)
        self._peers.append(p)
        return p

    @contextmanager
    def session_peer(self) -> Iterator[Peer]:
        """A connection that says ``bye`` to whatever session it holds and closes at the end."""
        p = self.peer()
        try:
            yield p
        finally:
            if p.session_id:
                p.request("bye", session_id=p.session_id)
            p.close()

    def hello(self, p: Peer, name: str = "neuroloop-check") -> str | None:
        """Send ``hello``; return the new session id (kept on the peer) or ``None``."""
        reply = p.request("hello", client_name=name)
        sid = reply.get("session_id") if reply.type == "welcome" else None
        p.session_id = sid if isinstance(sid, str) else None
        return p.session_id

    def configure(self, p: Peer, sid: str, **changes: Any) -> Reply:
        """Send ``configure`` with the check's envelope (``changes`` replace fields)."""
        assert self.env is not None
        fields: dict[str, Any] = {
            "session_id": sid,
            "control_period_ms": self.env.period_ms,
            "envelope": self.env.wire(),
            "options": dict(self.options),
        }
        fields.update(changes)
        return p.request("configure", **fields)

    def running(self, p: Peer) -> str | None:
        """``hello``, ``configure`` and ``reset`` on ``p``; the session id once running."""
        sid = self.hello(p)
        if sid is None:
            return None
        if self.configure(p, sid).type != "configured":
            return None
        if p.request("reset", session_id=sid, seed=None).type != "status":
            return None
        return sid

    def stimulating(self, p: Peer, area: str, label: str) -> str | None:
        """Bring ``p``'s session to running with the routine stimulus on, from any state.

        A new session is opened if ``p`` holds none.

        Returns:
            The session id, or ``None`` after recording why the set-up failed.
        """
        env = self.env
        assert env is not None
        sid = p.session_id or self.hello(p)
        steps: list[Reply] = []
        if sid is not None:
            p.request("stop", session_id=sid, reason="next check")
            if (self.configure(p, sid).type == "configured"
                    and p.request("reset", session_id=sid, seed=None).type == "status"):
                steps = [self.step(p, sid, None), self.step(p, sid, env.stimulus(env.amp_on))]
        if sid is not None and len(steps) == 2 and all(s.type == "observation" for s in steps):
            status = self.status(p, sid)
            if status.get("stimulating") is True:
                return sid
            got = (f"after an on step, {status.describe()} with stimulating "
                   f"{status.get('stimulating')!r}")
        else:
            got = steps[-1].describe() if steps else "no session, or configure/reset refused"
        self.record(area, f"set-up for {label}", "§5", False,
                    "hello, configure, reset, an off step and an on step accepted, and "
                    "stimulating true", got)
        return None

    def step(
        self, p: Peer, sid: str, stimulus: dict[str, float] | None, duration_ms: float | None = None
    ) -> Reply:
        """One ``step`` of one control period (or ``duration_ms``)."""
        assert self.env is not None
        duration = self.env.period_ms if duration_ms is None else duration_ms
        # A device steps in real time: allow the window itself on top of the deadline.
        return p.request(
            "step",
            timeout_s=self.timeout_s + duration / 1000.0,
            session_id=sid,
            stimulus=stimulus,
            duration_ms=float(duration),
            want_spikes=False,
        )

    def status(self, p: Peer, sid: str | None = None) -> Reply:
        """``get_status`` (from any connection)."""
        return p.request("get_status", session_id=sid)

    def close(self) -> None:
        """Close every connection opened by the run."""
        for p in self._peers:
            p.close()
        self._peers.clear()
