"""Rebuild the recorded envelope and policy from a session header.

The header written by ``neuroloop-controller`` holds the envelope (every field) and its hash,
the run configuration (policy name and its arguments) and, for a policy bundle, the bundle's
path and the SHA-256 of its ``bundle.json`` (which pins ``weights.npz`` through
``weights_sha256``). What is rebuilt here must be what ran: a recomputed hash that differs from
the recorded one is reported as a :class:`HeaderCheck` failure. Overrides (``--envelope``,
``--policy``) replace a recorded part on purpose, to try something new against a real session;
the hash checks then become notes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from controller.policies.base import Policy
from controller.policies.bundle import META_FILE, BundlePolicy, load_bundle, training_setting
from controller.policies.factory import build_policy
from controller.replay.session import Session
from core.errors import ConfigError, RecordingError
from protocol.envelope.config import SafetyEnvelope, load_envelope, validate


@dataclass(frozen=True)
class HeaderCheck:
    """One check of a rebuilt part against the header.

    Args:
        field: What was checked (``envelope_hash``, ``policy.bundle_sha256`` …).
        expected: The recorded value.
        got: The value of what was rebuilt.
        ok: Whether they agree.
        binding: Whether a disagreement fails verification (false for deliberate overrides).
        note: Explanation.
    """

    field: str
    expected: str
    got: str
    ok: bool
    binding: bool
    note: str = ""


@dataclass(frozen=True)
class Rebuilt:
    """The envelope and policy to replay, with the header checks made on the way."""

    envelope: SafetyEnvelope
    policy: Policy
    checks: tuple[HeaderCheck, ...]
    policy_source: str


def recorded_envelope(session: Session) -> SafetyEnvelope:
    """The envelope stored in the header, validated.

    Raises:
        RecordingError: The stored envelope is not a valid envelope.
    """
    raw = session.meta["envelope"]
    names = {f.name for f in fields(SafetyEnvelope)}
    if set(raw) != names:
        raise RecordingError(
            f"Expected header envelope fields {sorted(names)} in {session.path}, actual "
            f"missing {sorted(names - set(raw))}, extra {sorted(set(raw) - names)}"
        )
    try:
        return validate(SafetyEnvelope(**raw), f"header envelope of {session.path}")
    except (ConfigError, TypeError) as err:
        raise RecordingError(f"Expected a valid envelope in the header: {err}") from err


def _resolve_bundle(session: Session, recorded: str) -> Path:
    candidates = [Path(recorded)]
    if not Path(recorded).is_absolute():
        candidates.insert(0, session.path.parent / recorded)
    candidates.append(session.path.parent / Path(recorded).name)
    for candidate in candidates:
        if (candidate / META_FILE).is_file():
            return candidate
    raise ConfigError(
        f"Expected the session's policy bundle at one of {[str(c) for c in candidates]}, "
        "actual none found; pass its directory with --policy"
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _builtin(session: Session, name: str, envelope: SafetyEnvelope) -> Policy:
    cfg = session.config
    return build_policy(
        name,
        envelope,
        amplitude=cfg.get("amplitude"),
        frequency_hz=cfg.get("frequency_hz"),
        pulse_width_us=cfg.get("pulse_width_us"),
        onset_ms=float(cfg.get("onset_ms", 1980.0)),
        latch_below_mv=float(cfg.get("latch_below_mv", 75.0)),
    )


def _bundle(
    session: Session, root: Path, envelope: SafetyEnvelope, binding: bool
) -> tuple[Policy, list[HeaderCheck]]:
    meta: dict[str, Any] = session.meta["policy"]
    checks: list[HeaderCheck] = []
    recorded = str(meta.get("bundle_sha256", ""))
    got = _sha256(root / META_FILE)
    checks.append(
        HeaderCheck(
            "policy.bundle_sha256",
            recorded,
            got,
            recorded == got,
            binding,
            f"SHA-256 of {root / META_FILE} (pins weights.npz through weights_sha256)",
        )
    )
    bundle = load_bundle(root)
    if bundle.envelope_hash != envelope.sha256():
        raise ConfigError(
            f"Expected policy bundle {root} to be trained against envelope "
            f"{envelope.sha256()}, actual {bundle.envelope_hash}"
        )
    # The onset the recorded bundle ran with; recordings from before bundles had an onset
    # carry none (they acted from t = 0). A bundle substituted for another recorded policy
    # (--policy) gets the onset a live run would give it.
    if meta.get("name") == "bundle":
        onset = float(meta.get("onset_ms", 0.0))
    else:
        onset = training_setting(bundle, "onset_ms") or 0.0
    return BundlePolicy(bundle, onset_ms=onset), checks


def rebuild(
    session: Session, *, envelope_path: str | None = None, policy_spec: str | None = None
) -> Rebuilt:
    """Rebuild the envelope and policy to replay.

    Args:
        session: The session.
        envelope_path: Replace the recorded envelope (a TOML file, or ``simulator``/``device``).
        policy_spec: Replace the recorded policy (``off``/``constant``/``ftsts`` with the
            recorded arguments, or a bundle directory).

    Raises:
        RecordingError: The header's envelope or policy cannot be rebuilt.
        ConfigError: An override is invalid or the recorded bundle cannot be found.
    """
    checks: list[HeaderCheck] = []
    recorded_hash = str(session.meta["envelope_hash"])
    if envelope_path is None:
        envelope = recorded_envelope(session)
        got = envelope.sha256()
        checks.append(
            HeaderCheck(
                "envelope_hash",
                recorded_hash,
                got,
                got == recorded_hash,
                True,
                "SHA-256 of the header's envelope, recomputed",
            )
        )
    else:
        envelope = load_envelope(envelope_path)
        got = envelope.sha256()
        checks.append(
            HeaderCheck(
                "envelope_hash",
                recorded_hash,
                got,
                got == recorded_hash,
                False,
                f"envelope replaced by --envelope {envelope_path}",
            )
        )
    meta = session.meta["policy"]
    name = str(meta.get("name", ""))
    if policy_spec is None:
        if name == "bundle":
            root = _resolve_bundle(session, str(meta.get("bundle_path", "")))
            policy, found = _bundle(session, root, envelope, True)
            checks += found
            source = f"recorded bundle {root}"
        else:
            try:
                policy = _builtin(session, name, envelope)
            except ConfigError as err:
                raise RecordingError(
                    f"Expected the header's policy {name!r} to rebuild, actual: {err}"
                ) from err
            source = f"recorded built-in {name!r}"
    elif Path(policy_spec).is_dir():
        policy, found = _bundle(session, Path(policy_spec), envelope, False)
        checks += found
        source = f"bundle {policy_spec} (override)"
    else:
        policy = _builtin(session, policy_spec, envelope)
        source = f"built-in {policy_spec!r} (override)"
    return Rebuilt(envelope, policy, tuple(checks), source)
