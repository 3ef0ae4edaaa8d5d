"""The conformance report: one line per check, with its section of docs/protocol.md."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Outcome = Literal["pass", "fail", "skip"]


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check.

    Args:
        area: The group it belongs to (``handshake``, ``states`` …).
        name: What was checked, in a few words.
        section: The section of docs/protocol.md that requires it (``§5``).
        outcome: ``pass``, ``fail`` or ``skip``.
        expected: What the document requires.
        got: What the backend did.
    """

    area: str
    name: str
    section: str
    outcome: Outcome
    expected: str
    got: str


@dataclass
class Report:
    """Every check run against one backend.

    Args:
        address: The backend's address.
        backend: ``backend_kind``/``backend_name`` from ``welcome`` ("" if none came).
        results: The checks, in the order they ran.
    """

    address: str
    backend: str = ""
    results: list[CheckResult] = field(default_factory=list)

    @property
    def failures(self) -> list[CheckResult]:
        """The failed checks."""
        return [r for r in self.results if r.outcome == "fail"]

    @property
    def ok(self) -> bool:
        """Whether no check failed (and at least one passed)."""
        return not self.failures and any(r.outcome == "pass" for r in self.results)

    def counts(self) -> dict[str, int]:
        """How many checks passed, failed and were skipped."""
        out = {"pass": 0, "fail": 0, "skip": 0}
        for r in self.results:
            out[r.outcome] += 1
        return out

    def to_text(self, verbose: bool = False) -> str:
        """A readable report: failures in full, passes as one line each when ``verbose``."""
        lines = [f"Conformance of {self.backend or 'the backend'} at {self.address} "
                 "to docs/protocol.md (version 1)"]
        area = ""
        for r in self.results:
            if r.outcome == "pass" and not verbose:
                continue
            if r.area != area:
                area = r.area
                lines.append(f"\n[{area}]")
            mark = {"pass": "PASS", "fail": "FAIL", "skip": "SKIP"}[r.outcome]
            lines.append(f"  {mark} {r.name} ({r.section})")
            if r.outcome != "pass":
                lines.append(f"       expected: {r.expected}")
                lines.append(f"       got:      {r.got}")
        c = self.counts()
        verdict = "CONFORMS" if self.ok else "DOES NOT CONFORM"
        lines.append(
            f"\n{verdict}: {c['pass']} passed, {c['fail']} failed, {c['skip']} skipped"
            + ("" if verbose else " (--verbose lists the passes)")
        )
        return "\n".join(lines)

    def to_json(self) -> str:
        """The report as JSON: ``{address, backend, ok, counts, results: [...]}``."""
        data: dict[str, Any] = {
            "address": self.address,
            "backend": self.backend,
            "ok": self.ok,
            "counts": self.counts(),
            "results": [asdict(r) for r in self.results],
        }
        return json.dumps(data, indent=2)
