"""The simulator backend: a faithful protocol wrapper of simulator.network.Network."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from dataclasses import replace

import msgpack
import numpy as np
import pytest
import structlog

from core.errors import SafetyLimitError
from protocol.client import BackendClient
from protocol.codec import pack, to_wire, unpack_reply
from protocol.envelope.config import load_envelope, validate
from protocol.envelope.wire import envelope_to_wire
from protocol.messages import (
    Configure,
    Configured,
    ErrorReply,
    Hello,
    Observation,
    Reply,
    Request,
    Reset,
    Status,
    Step,
    Welcome,
)
from protocol.process import spawn_local_backend
from protocol.schema import WireEnvelope
from simulator.experiments import default_network_config
from simulator.network import OBSERVATION_FIELDS, Network
from simulator.sensing import SensingConfig
from simulator.server import SIM_CAPABILITIES, SimulatorBackend, serve_main
from simulator.stimulus import Stimulus

PEER = b"ctl"
WARM_UP_MS = 100.0
FTSTS = {
    "amplitude_mv": 100.0,
    "frequency_hz": 1000.0 / 12.0,
    "pulse_width_us": 1000.0,
    "ei_offset_ms": 0.0,
}


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """CLI mains configure structlog onto the captured stderr; undo that after each test."""
    yield
    structlog.reset_defaults()


def sim_envelope(amplitude_max: float = 200.0) -> WireEnvelope:
    """The shipped simulator envelope with the fastest ramps the floors allow."""
    env = replace(
        load_envelope("simulator"),
        amplitude_max=amplitude_max,
        amplitude_up_per_s=4000.0,
        soft_start_s=0.1,
    )
    return envelope_to_wire(validate(env), SIM_CAPABILITIES)


class Sim:
    def __init__(self) -> None:
        self.backend = SimulatorBackend(session_timeout_s=60.0)
        self.session = ""
        self._id = 0

    def send(self, request: Request) -> Reply:
        self._id += 1
        return unpack_reply(self.backend.handle(PEER, pack(self._id, request)))[1]

    def start(self, envelope: WireEnvelope | None = None, **options: object) -> None:
        welcome = self.send(Hello("pytest"))
        assert isinstance(welcome, Welcome)
        self.session = welcome.session_id
        opts = {"n_scale": 0.1, "seed": 11, **options}
        env = envelope or sim_envelope()
        configured = self.send(Configure(self.session, 20.0, env, opts))  # type: ignore[arg-type]
        assert isinstance(configured, Configured), configured
        self.reset()

    def reset(self) -> None:
        """Reset, then 100 ms off: the soft start then allows the FTSTS train."""
        assert isinstance(self.send(Reset(self.session, None)), Status)
        assert isinstance(self.step(None, WARM_UP_MS), Observation)

    def step(
        self,
        stimulus: dict[str, float] | None = FTSTS,
        duration_ms: float = 20.0,
        want_spikes: bool = False,
    ) -> Reply:
        return self.send(Step(self.session, stimulus, duration_ms, want_spikes))


def test_capabilities_match_the_simulator() -> None:
    assert SIM_CAPABILITIES.observation_fields == OBSERVATION_FIELDS
    amp = SIM_CAPABILITIES.param("amplitude_mv")
    assert (amp.role, amp.unit, amp.min, amp.max) == ("amplitude", "mV", 0.0, 400.0)
    assert SIM_CAPABILITIES.control_period_ms == 20.0


def test_steps_reproduce_a_direct_network_run() -> None:
    sim = Sim()
    sim.start()
    served = []
    pattern = [True, True, False, False, True]  # off to on again needs the soft start: 100 ms
    for on in pattern:
        obs = sim.step(FTSTS if on else None, WARM_UP_MS if not on else 20.0, want_spikes=True)
        assert isinstance(obs, Observation)
        served.append(obs)
    # the served default is the paper's Fig 3 network (stimulus noise included)
    net = Network(default_network_config("paper", 0.1))
    net.reset(seed=11)
    net.advance(None, WARM_UP_MS)
    for i, (on, obs) in enumerate(zip(pattern, served, strict=True)):
        stats = net.advance(Stimulus(100.0) if on else None, 20.0 if on else WARM_UP_MS)
        assert obs.fields == stats.observation()
        assert obs.t_model_ms == stats.t_end_ms
        assert obs.seq == i + 2
        assert obs.spikes is not None
        np.testing.assert_array_equal(obs.spikes.times(), stats.spike_times_ms)
        np.testing.assert_array_equal(obs.spikes.neuron_ids(), stats.spike_neurons)
    assert served[0].applied == FTSTS
    assert served[2].applied is None


def test_reset_seed_gives_identical_runs() -> None:
    sim = Sim()
    sim.start()
    first = [sim.step() for _ in range(3)]
    sim.reset()
    second = [sim.step() for _ in range(3)]
    assert first == second


@pytest.mark.parametrize(
    ("change", "code", "text"),
    [
        ({"amplitude_mv": 401.0}, "limit_exceeded", "amplitude_mv in [0, 400] mV (advertised)"),
        ({"amplitude_mv": 150.0}, "limit_exceeded", "[0, 120] mV (configured envelope)"),
        (
            {"frequency_hz": 250.0},
            "limit_exceeded",
            "Expected frequency_hz in [5, 180] Hz (configured envelope), actual 250.0",
        ),
        ({"ei_offset_ms": 60.0}, "limit_exceeded", "ei_offset_ms in [-50, 50]"),
    ],
)
def test_out_of_range_stimulus_is_refused(change: dict[str, float], code: str, text: str) -> None:
    sim = Sim()
    sim.start(sim_envelope(amplitude_max=120.0))
    assert isinstance(sim.step(), Observation)
    reply = sim.step({**FTSTS, **change})
    assert isinstance(reply, ErrorReply)
    assert reply.code == code
    assert text in reply.message
    assert reply.stopped
    assert sim.backend.state == "stopped"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_stimulus_is_refused(bad: float) -> None:
    sim = Sim()
    sim.start()
    body = to_wire(9, Step(sim.session, FTSTS, 20.0))
    body["stimulus"] = {**FTSTS, "pulse_width_us": bad}
    reply = unpack_reply(sim.backend.handle(PEER, msgpack.packb(body)))[1]
    assert isinstance(reply, ErrorReply)
    assert reply.code == "non_finite"
    assert sim.backend.state == "stopped"


def test_paper_semantics_need_whole_chunks_clean_do_not() -> None:
    sim = Sim()
    sim.start()
    reply = sim.step(FTSTS, 10.0)
    assert isinstance(reply, ErrorReply)
    assert reply.code == "out_of_range"
    assert "multiple of 20.0 ms in paper semantics" in reply.message
    clean = Sim()
    clean.start(semantics="clean")
    obs = clean.step(FTSTS, 10.0)
    assert isinstance(obs, Observation)
    assert obs.t_model_ms == pytest.approx(WARM_UP_MS + 10.0)


@pytest.mark.parametrize(
    ("options", "text"),
    [
        ({"n_scale": 10.0}, "Expected option n_scale as a number in [0.005, 4]"),
        ({"semantics": "fast"}, "Expected option semantics in paper|clean"),
        ({"polarity": "up"}, "Expected option polarity in desync|sync"),
        ({"seed": "x"}, "Expected option seed as an integer"),
        ({"sensing_units": 2.5}, "Expected option sensing_units as an integer, actual 2.5"),
        ({"sensing_units": 5000}, "Expected option sensing_units as a number in [0, 1000]"),
        (
            {"sensing_noise_uv_per_sqrt_hz": -1.0},
            "Expected option sensing_noise_uv_per_sqrt_hz as a number in [0, 100]",
        ),
    ],
)
def test_bad_options_are_refused(options: dict[str, object], text: str) -> None:
    sim = Sim()
    welcome = sim.send(Hello("pytest"))
    assert isinstance(welcome, Welcome)
    env = sim_envelope()
    reply = sim.send(Configure(welcome.session_id, 20.0, env, options))  # type: ignore[arg-type]
    assert isinstance(reply, ErrorReply)
    assert reply.code == "bad_config"
    assert text in reply.message


def test_sensing_options_set_what_the_implant_senses() -> None:
    """The served windows equal a direct run with the same SensingConfig, and differ from the
    default sensor's (same network, same spikes)."""
    options = {
        "sensing_units": 4,
        "sensing_noise_uv_per_sqrt_hz": 0.5,
        "sensing_band_centre_hz": 20.0,
        "sensing_blank_post_ms": 2.0,
    }
    sensed = Sim()
    sensed.start(**options)
    plain = Sim()
    plain.start()
    obs, base = sensed.step(), plain.step()
    assert isinstance(obs, Observation)
    assert isinstance(base, Observation)
    sensing = SensingConfig(
        n_units=4, noise_uv_per_sqrt_hz=0.5, band_centre_hz=20.0, blank_post_ms=2.0
    )
    net = Network(default_network_config("paper", 0.1), sensing=sensing)
    net.reset(seed=11)
    net.advance(None, WARM_UP_MS)
    assert obs.fields == net.advance(Stimulus(100.0), 20.0).observation()
    assert obs.fields["synchrony"] == base.fields["synchrony"]  # the network is the same
    assert obs.fields["units_synchrony"] != base.fields["units_synchrony"]
    assert obs.fields["lfp_beta_uv2"] != base.fields["lfp_beta_uv2"]


def test_paper_semantics_refuse_a_control_period_off_the_chunk() -> None:
    sim = Sim()
    welcome = sim.send(Hello("pytest"))
    assert isinstance(welcome, Welcome)
    env = sim_envelope()
    reply = sim.send(Configure(welcome.session_id, 30.0, env, {}))
    assert isinstance(reply, ErrorReply)
    assert "control_period_ms to be a multiple of 20 ms" in reply.message


def test_served_simulator_in_a_subprocess() -> None:
    cmd = [sys.executable, "-m", "simulator.server", "--log-level", "warning"]
    with spawn_local_backend(cmd, "tcp", ready_timeout_s=240.0) as proc:
        with BackendClient(proc.address, timeout_s=30.0) as client:
            caps = client.hello().capabilities
            assert caps.observation_fields == OBSERVATION_FIELDS
            client.configure(sim_envelope(), options={"n_scale": 0.1})
            client.reset(seed=5)
            client.step(None, WARM_UP_MS)
            obs = client.step(FTSTS, want_spikes=True)
            assert obs.fields["weight_mv"] == pytest.approx(260.0, rel=0.05)
            assert obs.spikes is not None
            assert len(obs.spikes) > 0
            with pytest.raises(SafetyLimitError, match="limit_exceeded"):
                client.step({**FTSTS, "amplitude_mv": 500.0})
            client.bye()
        assert proc.stop() == 0


def test_serve_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        serve_main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for needle in (
        "--bind",
        "--curve-keys",
        "amplitude_mv 0-400",
        "NEUROLOOP_READY",
        "tcp://127.0.0.1:*",
        "neuroloop-keys init-server",
    ):
        assert needle in out


def test_serve_refuses_public_address_without_keys(capsys: pytest.CaptureFixture[str]) -> None:
    assert serve_main(["--bind", "tcp://0.0.0.0:0", "--no-warmup"]) == 2
    assert "without CURVE keys" in capsys.readouterr().err
