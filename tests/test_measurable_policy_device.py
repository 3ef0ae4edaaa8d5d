"""The shipped measurable policies run unchanged on the serial device (issue 23, item 4).

Controller → ZeroMQ → serial bridge → pty → device emulator whose tissue is a real FTSTS
network: the bundle trained for the ``emulator`` envelope on the LFP features and the delivered
dose is accepted on the device backend, stimulates, ramps off in the stimulation-free tail, and
its recording verifies by replay. The full-size run (N = 2000, 27 s) is in the README.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from controller.cli import main
from controller.policies.bundle import load_bundle
from controller.replay.session import load_session
from controller.replay.verify import verify_session
from drivers.serial_stimulator import SerialStimulator
from drivers.testing import running_emulator, serving_bridge
from drivers.tissue import Tissue, make_network
from protocol.envelope.config import load_envelope
from protocol.observables import unobservable
from protocol.recording import read_recording

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED = ROOT / "controller" / "policies" / "pretrained"
MEASURABLE_BUNDLE = PRETRAINED / "measurable_ppo"
#: The PPO policy on the LFP features and the dose, and the dose schedule (issue 23).
MEASURABLE_BUNDLES = [MEASURABLE_BUNDLE, PRETRAINED / "measurable_schedule"]


@pytest.fixture(autouse=True)
def _structlog_defaults() -> Iterator[None]:
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.mark.parametrize("path", MEASURABLE_BUNDLES, ids=lambda p: p.name)
def test_the_shipped_bundle_reads_only_measurable_fields_for_the_emulator_envelope(
    path: Path,
) -> None:
    bundle = load_bundle(path)
    assert not unobservable(bundle.observation_fields)
    assert "dose_uc" in bundle.observation_fields
    assert bundle.envelope_hash == load_envelope("emulator").sha256()
    assert bundle.metadata["action"]["fields"][0]["unit"] == "mA"


@pytest.mark.parametrize("path", MEASURABLE_BUNDLES, ids=lambda p: p.name)
def test_measurable_policy_runs_on_the_serial_emulator_and_its_recording_verifies(
    path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = tmp_path / "device.nlrec"
    tissue = Tissue(make_network(160, 40), window_ms=20.0, seed=7)
    with running_emulator(tissue=tissue) as emu:
        driver = SerialStimulator(emu.port.url, ack_timeout_s=0.1, link_timeout_s=1.0)
        driver.handshake()
        with serving_bridge(driver) as endpoint:
            code = main([
                "--backend", "serial", "--connect", endpoint, "--envelope", "emulator",
                "--policy", str(path), "--period-ms", "100", "--duration", "3",
                "--tail-s", "0.6", "--record", str(record), "--log-level", "warning",
            ])  # fmt: skip
        driver.close()
    err = capsys.readouterr().err
    assert code == 0, err
    records = read_recording(record).records
    amps = [r.payload["setpoint"]["amplitude"] for r in records if r.kind == "command"]
    assert len(amps) == 30
    assert max(amps) > 0.0  # the policy stimulated (soft start: at most 4 mA × t / 1 s)
    assert amps[-3:] == [0.0, 0.0, 0.0]  # the envelope ramped it off in the tail
    for r in records:
        if r.kind == "observation":
            assert not unobservable(r.payload["fields"])  # a device reports what it senses
    report = verify_session(load_session(record))
    assert report.passed, report.text()
    summary = json.loads(Path(f"{record}.summary.json").read_text("utf-8"))
    assert summary["synchrony"]["field"] == "units_synchrony"
    assert summary["charge_delivered"] > 0.0
