"""Envelope enforcement (§5.1 #5-6a): each rule broken on its own, each refusal a safe stop.

Every scenario starts from ``reset`` and climbs legally (an off step, then steps the envelope
allows) to the point where one stimulus breaks exactly one rule. The legal steps must be
accepted, the breaking one refused with ``limit_exceeded`` and ``stopped: true``, and the
status must then show stimulation off. A rule the advertised ranges leave no room to break
alone is skipped, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.conformance.context import Context
from protocol.conformance.envelope import TestEnvelope
from protocol.conformance.states import expect_status

AREA = "envelope"
Stim = dict[str, float] | None


@dataclass(frozen=True)
class Scenario:
    """Legal steps, then one breaking stimulus.

    Args:
        name: The rule broken.
        section: Where the document states the rule.
        legal: Stimuli the envelope allows, sent in order after ``reset``.
        breach: The stimulus that breaks the rule (``None``: the scenario checks only that
            the legal steps are accepted).
        skip: Why the rule cannot be broken alone with these capabilities ("" if it can).
    """

    name: str
    section: str
    legal: tuple[Stim, ...]
    breach: Stim
    skip: str = ""


def scenarios(env: TestEnvelope) -> list[Scenario]:
    """The scenarios for ``env`` (amplitudes in wire units)."""
    amp_name, f_name, _ = env.names
    slew = env.slew_up
    ceiling_one_period = env.amp_max * env.period_ms / 1000.0 / env.extra["soft_start_s"]
    down = env.extra["amplitude_down_per_s"] * env.per_unit * env.period_ms / 1000.0
    high = 0.9 * slew
    s = env.stimulus
    out = [
        Scenario("the first step after reset must be off (soft start)", "§5.1 #6a",
                 (), s(env.amp_on)),
        Scenario("an off step, then a routine on step, then off (accepted)", "§5.1 #6a",
                 (None, s(env.amp_on), s(env.amp_on), None), None),
    ]
    adv_f = env.advertised[f_name]
    out.append(Scenario(
        "a frequency above the envelope's range", "§5.1 #6", (None,),
        s(0.0, frequency_hz=(env.f_hi + float(adv_f["max"])) / 2.0),
        "" if float(adv_f["max"]) > env.f_hi else "the envelope spans the advertised frequencies",
    ))
    adv_amp_max = float(env.advertised[amp_name]["max"])
    out.append(Scenario(
        "an amplitude above the envelope's maximum", "§5.1 #6", (None,),
        s((env.amp_max + adv_amp_max) / 2.0),
    ))
    rise = 1.5 * slew
    out.append(Scenario(
        "a rise faster than amplitude_up_per_s", "§5.1 #6a", (None,), s(rise),
        "" if rise < min(ceiling_one_period, env.amp_max) else
        "the soft start is as steep as the slew limit",
    ))
    fall_to = high - 2.0 * down
    out.append(Scenario(
        "a fall to a non-zero value faster than amplitude_down_per_s", "§5.1 #6a",
        (None, s(high), s(high - 0.5 * down)), s(fall_to),
        "" if fall_to > 0.0 and high <= ceiling_one_period else
        "amplitude_down_per_s is as fast as the rise",
    ))
    out.append(Scenario(
        "a fall to 0 in one step (accepted)", "§5.1 #6a", (None, s(high), s(0.0), None), None,
    ))
    f2 = env.f_lo + 0.5 * env.f_step
    out.append(Scenario(
        "a frequency change larger than frequency_step_hz", "§5.1 #6a",
        (None, s(env.amp_on), s(env.amp_on, frequency_hz=f2)),
        s(env.amp_on, frequency_hz=f2 + 1.5 * env.f_step),
        "" if f2 + 1.5 * env.f_step <= env.f_hi else "the frequency range is one step wide",
    ))
    w2 = env.pw_lo + 0.5 * env.pw_step
    w3 = w2 + 1.5 * env.pw_step
    fits = 2.0 * w3 + env.margin_us <= 1e6 / env.f_lo
    out.append(Scenario(
        "a pulse-width change larger than pulse_width_step_us", "§5.1 #6a",
        (None, s(env.amp_on), s(env.amp_on, pulse_width_us=w2)),
        s(env.amp_on, pulse_width_us=w3),
        "" if w3 <= env.pw_hi and fits and env.charge(env.amp_on, w3) <= env.extra[
            "charge_per_phase_max"] else "the width range leaves no room for the step alone",
    ))
    charge_ok = (env.charge(high, env.pw_hi) > env.extra["charge_per_phase_max"]
                 and 2.0 * env.pw_hi + env.margin_us <= 1e6 / env.f_lo)
    out.append(Scenario(
        "a charge per phase above charge_per_phase_max", "§5.1 #6a", (None,),
        s(high, pulse_width_us=env.pw_hi),
        "" if charge_ok else "the charge limit is not reachable inside the other rules",
    ))
    duty_ok = (env.charge(env.amp_on, env.pw_hi) <= env.extra["charge_per_phase_max"]
               and 2.0 * env.pw_hi + env.margin_us > 1e6 / env.f_hi)
    out.append(Scenario(
        "a pulse that does not fit the period (duty)", "§5.1 #6a", (None,),
        s(env.amp_on, frequency_hz=env.f_hi, pulse_width_us=env.pw_hi),
        "" if duty_ok else "the duty rule is not reachable inside the other rules",
    ))
    return out


def _show(stimulus: dict[str, float]) -> str:
    """``amplitude_mv=0.25, frequency_hz=100.6, …`` (6 significant digits)."""
    return ", ".join(f"{name}={value:.6g}" for name, value in stimulus.items())


def run(ctx: Context) -> None:
    """Run every scenario on one session, with a ``reset`` before each."""
    env = ctx.env
    assert env is not None
    with ctx.session_peer() as p:
        sid = ctx.hello(p)
        if sid is None or ctx.configure(p, sid).type != "configured":
            ctx.record(AREA, "set-up", "§5", False, "hello and configure accepted",
                       "refused")
            return
        for sc in scenarios(env):
            if sc.skip:
                ctx.skip(AREA, sc.name, sc.section, "limit_exceeded", sc.skip)
                continue
            p.request("stop", session_id=sid, reason="next scenario")
            if p.request("reset", session_id=sid, seed=None).type != "status":
                ctx.record(AREA, sc.name, sc.section, False, "reset accepted", "refused")
                continue
            accepted = True
            for i, stimulus in enumerate(sc.legal):
                reply = ctx.step(p, sid, stimulus)
                if reply.type != "observation":
                    ctx.record(AREA, sc.name, sc.section, False,
                               f"legal step {i + 1} {stimulus} accepted", reply.describe())
                    accepted = False
                    break
            if not accepted:
                continue
            if sc.breach is None:
                ctx.record(AREA, sc.name, sc.section, True, "every step accepted",
                           "every step accepted")
                continue
            reply = ctx.step(p, sid, sc.breach)
            ctx.expect_error(AREA, f"{sc.name}: {_show(sc.breach)}", sc.section, reply,
                             "limit_exceeded", stopped=True)
            expect_status(ctx, AREA, f"{sc.name}: stimulation off", "§5, §5.1",
                          ctx.status(p, sid), state="stopped", stimulating=False)
