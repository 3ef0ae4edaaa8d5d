"""``neuroloop-replay report`` (PNG figures), ``export`` (NWB) and ``info``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import structlog

from controller import replay_cli
from controller.replay.session import load_session

pynwb = pytest.importorskip("pynwb")

DATA = Path(__file__).parent / "data" / "replay"
FTSTS = DATA / "sim_ftsts_fast.nlrec"
FAULT = DATA / "replay_overrun_fault.nlrec"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _structlog_defaults():
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.mark.parametrize("golden", [FTSTS, FAULT])
def test_report_writes_the_four_figures(tmp_path, capsys, golden):
    out = tmp_path / "fig"
    assert replay_cli.main(["report", str(golden), "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["envelope.png", "observations.png", "stimulation.png", "timing.png"]
    for path in out.iterdir():
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC)
        assert len(data) > 5_000
    assert capsys.readouterr().out.count(".png") == 4


def test_export_nwb_round_trips_observations_commands_and_events(tmp_path):
    session = load_session(FAULT)
    out = tmp_path / "s.nwb"
    assert replay_cli.main(["export", str(FAULT), "--nwb", str(out)]) == 0
    assert pynwb.validate(path=str(out)) == []
    with pynwb.NWBHDF5IO(str(out), "r") as io:
        nwb = io.read()
        observed = [t for t in session.ticks if t.observation is not None]
        sync = nwb.acquisition["obs_synchrony"]
        np.testing.assert_array_equal(
            sync.data[:], [t.observation["fields"]["synchrony"] for t in observed]
        )
        np.testing.assert_array_equal(
            sync.timestamps[:], [t.observation["t_model_ms"] / 1000.0 for t in observed]
        )
        amp = nwb.processing["stimulation"]["command_amplitude"]
        np.testing.assert_array_equal(
            amp.data[:], [t.command["setpoint"]["amplitude"] for t in session.ticks]
        )
        assert amp.unit == "mV"
        events = nwb.processing["envelope"]["envelope_events"].to_dataframe()
        n_events = sum(len(t.events) for t in session.ticks)
        assert len(events) == n_events + 1  # plus the backend_error fault
        assert events.iloc[-1]["kind"] == "fault"
        assert events.iloc[-1]["reason"] == "backend_error"
        assert "policy bundle" in nwb.session_description
        assert json.loads(nwb.notes)["envelope_hash"] == session.meta["envelope_hash"]


def test_export_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "s.nwb"
    out.write_bytes(b"precious")
    assert replay_cli.main(["export", str(FTSTS), "--nwb", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert out.read_bytes() == b"precious"


def test_info_json_lists_ticks_and_records(capsys):
    assert replay_cli.main(["info", str(FTSTS), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["ticks"] == 60
    assert info["pace"] == "fast"
    assert info["records"]["command"] == 60
    assert "weight_mv" in info["observation_fields"]
