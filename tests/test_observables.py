"""What an implant can measure (``protocol.observables``) and the controller's refusal on devices.

The one definition of measurable fields; the device wire and the serial bridge carry only those;
``neuroloop-controller`` refuses a policy that reads an unobservable field on a device backend
(before connecting, and again at the handshake from the backend's own ``backend_kind``), and
allows it, logged, on the simulator.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
import structlog
from structlog.testing import capture_logs

from controller.backends.inprocess import InProcessConnection
from controller.cli import main
from controller.policies.builtin import FtstsPolicy
from controller.tick import open_session
from core.errors import ConfigError
from drivers.bridge import OBSERVATION_FIELDS as BRIDGE_FIELDS
from drivers.bridge import SerialBackend
from drivers.emulator import DeviceEmulator
from drivers.firmware import DeviceFirmware
from drivers.sensing import SENSE_FIELDS
from drivers.serial_stimulator import SerialStimulator
from drivers.testing import running_emulator, serving_bridge
from drivers.tissue import Tissue, WindowLike, make_network
from drivers.virtual import VirtualStimulator
from protocol.envelope.config import load_envelope
from protocol.observables import (
    MEASURABLE_FIELDS,
    SENSED_FIELDS,
    UNOBSERVABLE_FIELDS,
    is_measurable,
    unobservable,
)
from protocol.recording import read_recording
from simulator.config import NetworkConfig
from simulator.network import OBSERVATION_FIELDS as SIM_FIELDS
from simulator.stimulus import Stimulus

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_BUNDLE = ROOT / "controller" / "policies" / "pretrained" / "ftsts_ppo"
SIX = ("lfp_beta_uv2", "lfp_band_uv2", "lfp_peak_hz", "lfp_peak_uv2", "units_synchrony",
       "units_rate_hz")  # fmt: skip


@pytest.fixture(autouse=True)
def _structlog_defaults() -> Iterator[None]:
    """CLI runs configure structlog (level filter); every test starts from the defaults."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


# ----------------------------------------------------------------------------- definition
def test_the_contract_fields_are_measurable_and_the_oracles_are_not() -> None:
    assert set(SIX) | {"charge_mv_ms"} <= MEASURABLE_FIELDS
    assert {"weight_mv", "synchrony", "chi", "mean_v_e_mv", "sd_v_e_mv", "mean_v_i_mv",
            "sd_v_i_mv", "rate_e_hz", "rate_i_hz"} == UNOBSERVABLE_FIELDS  # fmt: skip
    assert not MEASURABLE_FIELDS & UNOBSERVABLE_FIELDS
    assert all(is_measurable(name) for name in SIX)
    assert not is_measurable("weight_mv")


def test_unobservable_keeps_order_drops_repeats_and_never_assumes_an_unknown_name() -> None:
    names = ["lfp_beta_uv2", "weight_mv", "synchrony", "weight_mv", "made_up_field"]
    assert unobservable(names) == ("weight_mv", "synchrony", "made_up_field")
    assert unobservable(SIX) == ()


def test_every_simulator_observation_field_is_classified() -> None:
    unclassified = set(SIM_FIELDS) - MEASURABLE_FIELDS - UNOBSERVABLE_FIELDS
    assert not unclassified, f"declare {sorted(unclassified)} in protocol/observables.py"


def test_the_device_wire_and_the_bridge_carry_only_measurable_fields() -> None:
    assert tuple(f.feature for f in SENSE_FIELDS) == SENSED_FIELDS
    assert unobservable(BRIDGE_FIELDS) == ()
    assert set(SIX) <= set(BRIDGE_FIELDS)


# ------------------------------------------------------------------------------- refusal
def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("policy", "named"),
    [
        ("ftsts", "['weight_mv']"),
        (str(SHIPPED_BUNDLE), "['synchrony', 'mean_v_e_mv', 'sd_v_e_mv', 'mean_v_i_mv', "
                              "'sd_v_i_mv', 'weight_mv']"),
    ],
    ids=["builtin-ftsts", "shipped-ftsts_ppo"],
)  # fmt: skip
def test_controller_cli_refuses_a_policy_on_unobservable_fields_on_serial_before_connecting(
    policy: str, named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The address leads nowhere: the refusal comes before any connection is tried.
    args = ["--backend", "serial", "--connect", "ipc:///nonexistent/neuroloop.sock",
            "--policy", policy, "--no-record"]  # fmt: skip
    code, err = run_main(args, capsys)
    assert code == 2
    assert f"to read only fields an implant can measure on the serial backend, actual " \
           f"unobservable {named}; measurable fields: ['charge_mv_ms', " in err  # fmt: skip
    assert "'lfp_beta_uv2'" in err
    assert "Traceback" not in err


def test_the_handshake_refuses_it_from_the_backends_own_kind_over_zeromq(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Even when the command line says ``sim``, a backend whose welcome says ``serial`` refuses."""
    firmware = DeviceFirmware()
    driver = VirtualStimulator(firmware)
    driver.handshake()
    with serving_bridge(driver) as endpoint:
        args = ["--backend", "sim", "--connect", endpoint, "--policy", "ftsts", "--no-record",
                "--duration", "1"]  # fmt: skip
        code, err = run_main(args, capsys)
    assert code == 2
    assert "Expected policy 'ftsts' to read only fields an implant can measure on the serial " \
           "backend, actual unobservable ['weight_mv']" in err  # fmt: skip
    assert firmware.envelope is None  # never armed
    assert firmware.amp_ua == 0


def test_a_simulator_allows_it_and_logs_policy_uses_unobservable() -> None:
    connection = InProcessConnection.simulator(NetworkConfig(n_e=40, n_i=10), warm_up=False)
    try:
        with capture_logs() as logs:
            info = open_session(
                connection,
                load_envelope("simulator"),
                20.0,
                client_name="test",
                required_fields=FtstsPolicy.required_fields,
                user="policy 'ftsts'",
            )
    finally:
        connection.close()
    assert info.kind == "sim"
    event = next(e for e in logs if e["event"] == "policy_uses_unobservable")
    assert event["fields"] == ["weight_mv"]
    assert event["user"] == "policy 'ftsts'"
    assert event["backend"] == "sim"


def test_a_device_environment_or_policy_reading_the_weight_is_refused_in_process() -> None:
    driver = VirtualStimulator(DeviceFirmware())
    connection = InProcessConnection(SerialBackend(driver, session_timeout_s=60.0))
    try:
        with pytest.raises(ConfigError, match=r"actual unobservable \['synchrony', 'weight_mv'\]"):
            open_session(connection, load_envelope("device"), 100.0, client_name="test",
                         required_fields=("lfp_beta_uv2", "synchrony", "weight_mv"),
                         user="the environment")  # fmt: skip
    finally:
        connection.close()


# ------------------------------------------------------------------- allowed end to end
def write_measurable_bundle(root: Path, envelope_hash: str) -> Path:
    """A tiny seeded tanh MLP on two measurable fields → amplitude in mA (0–1 mA, 130 Hz)."""
    rng = np.random.default_rng(23)
    arrays = {
        "layer0.weight": rng.normal(0.0, 1.0, (4, 2)).astype(np.float32),
        "layer0.bias": np.zeros(4, dtype=np.float32),
        "layer1.weight": rng.normal(0.0, 0.5, (1, 4)).astype(np.float32),
        "layer1.bias": np.array([0.5], dtype=np.float32),
    }
    root.mkdir(parents=True)
    np.savez(root / "weights.npz", **arrays)  # type: ignore[arg-type]
    meta = {
        "format": "neuroloop.policy_bundle",
        "format_version": 1,
        "algorithm": "seeded-mlp (test)",
        "versions": {"neuroloop": version("neuroloop"), "numpy": np.__version__},
        "envelope_hash": envelope_hash,
        "observation": {
            "fields": [
                {"name": "units_synchrony", "unit": "1", "low": 0.0, "high": 1.0},
                {"name": "lfp_beta_uv2", "unit": "uV^2", "low": 0.0, "high": 10.0},
            ],
            "normalization": None,
        },
        "action": {
            "fields": [{"name": "amplitude", "unit": "mA", "low": 0.0, "high": 1.0}],
            "fixed": {"frequency_hz": 130.0, "pulse_width_us": 90.0},
            "output": "tanh",
        },
        "network": {
            "layers": [
                {"weight": "layer0.weight", "bias": "layer0.bias", "activation": "tanh"},
                {"weight": "layer1.weight", "bias": "layer1.bias", "activation": "identity"},
            ]
        },
        "weights_sha256": hashlib.sha256((root / "weights.npz").read_bytes()).hexdigest(),
    }
    (root / "bundle.json").write_text(json.dumps(meta), "utf-8")
    return root


class SeenNetwork:
    """A real simulator network that keeps every window's observation (what the tissue sensed)."""

    def __init__(self, n_e: int, n_i: int) -> None:
        self.network = make_network(n_e, n_i)
        self.config = getattr(self.network, "config", None)  # the emulator warms its kernels up
        self.seen: list[dict[str, float]] = []

    def reset(self, seed: int) -> None:
        self.network.reset(seed)

    def advance(self, stimulus: Stimulus | None, duration_ms: float) -> WindowLike:
        window = self.network.advance(stimulus, duration_ms)
        self.seen.append(window.observation())
        return window


def test_a_bundle_on_measurable_fields_runs_on_the_serial_device_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Controller → ZeroMQ → bridge → pty → emulated device sensing a real network and back.

    Every observation the controller recorded is one the tissue sensed, through STATUS v2's
    fixed point (10⁻⁴ µV², mHz, 10⁻⁴), and carries no unobservable field.
    """
    bundle = write_measurable_bundle(tmp_path / "bundle", load_envelope("device").sha256())
    record = tmp_path / "run.nlrec"
    network = SeenNetwork(160, 40)
    tissue = Tissue(network, window_ms=20.0, seed=4)
    with running_emulator(tissue=tissue) as emu:
        emulator: DeviceEmulator = emu
        driver = SerialStimulator(emulator.port.url, ack_timeout_s=0.1, link_timeout_s=1.0)
        driver.handshake()
        with serving_bridge(driver) as endpoint:
            args = ["--backend", "serial", "--connect", endpoint, "--policy", str(bundle),
                    "--period-ms", "100", "--duration", "1.5", "--record", str(record)]  # fmt: skip
            code, err = run_main(args, capsys)
        driver.close()
    assert code == 0, err
    observations = [r.payload for r in read_recording(record).records if r.kind == "observation"]
    assert len(observations) >= 10
    sensed = {tuple(round(w[f.feature] * f.scale) for f in SENSE_FIELDS) for w in network.seen}
    for obs in observations:
        fields = obs["fields"]
        assert not unobservable(fields)  # only what an implant measures came back
        wire = tuple(round(fields[f.feature] * f.scale) for f in SENSE_FIELDS)
        assert wire in sensed  # exactly a window the tissue sensed
    assert len({obs["fields"]["lfp_band_uv2"] for obs in observations}) > 1  # it moves
    summary = json.loads(Path(f"{record}.summary.json").read_text("utf-8"))
    assert summary["synchrony"]["field"] == "units_synchrony"  # the R a device can sense
    assert summary["synchrony"]["before"]["mean_r"] is not None
