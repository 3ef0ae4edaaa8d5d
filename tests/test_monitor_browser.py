"""The monitor page in a real headless Chromium, during a real run against the simulator.

Screenshots are saved in the test's tmp dir and copied to ``$NEUROLOOP_ARTEFACTS`` when set.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from monitor_support import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    artefact,
    controller,
    free_port,
    records,
    wait_exit,
    wait_http,
)

playwright_api = pytest.importorskip("playwright.sync_api")

EXIT_OK, EXIT_ESTOP = 0, 5


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    assert Path(CHROMIUM).exists(), "the browser tests need Debian's chromium (.ci/run installs it)"
    profile = tmp_path_factory.mktemp("chromium-profile")
    with playwright_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1250},
        )
        # one visible tab: a second (background) tab would have its timers throttled
        yield context.pages[0] if context.pages else context.new_page()
        context.close()


def _state(page) -> str | None:
    return page.evaluate("(window.__monitor.sessions[0]||{}).status?.state ?? null")


def test_live_page_matches_the_recording_and_its_estop_stops_the_run(browser, tmp_path):
    port = free_port()
    proc = controller(
        tmp_path, "live.nlrec", "--policy", "ftsts", "--duration", "30", "--onset-ms", "1000",
        "--monitor", f"127.0.0.1:{port}",
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_http(url, proc)
        page = browser
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        states: list[str] = []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # watch the state change: armed → stimulating
            state = _state(page)
            if state and (not states or states[-1] != state):
                states.append(state)
            rows = page.evaluate("(window.__monitor.sessions[0]||{}).rows || 0")
            if rows >= 120:
                break
            assert proc.poll() is None, (tmp_path / "live.nlrec.log").read_text()[-3000:]
            time.sleep(0.05)
        assert "armed" in states
        assert states[-1] == "stimulating"
        shot = tmp_path / "monitor-live-stimulating.png"
        page.screenshot(path=str(shot), full_page=True)
        artefact(shot)
        page.click("button.estop")
        page.wait_for_function(
            "window.__monitor.sessions[0].status.state === 'e-stop'", timeout=30_000
        )
        code = wait_exit(proc, tmp_path / "live.nlrec.log")
        page.wait_for_function("window.__monitor.sessions[0].status.end_reason !== null")
        shot = tmp_path / "monitor-live-estop.png"
        page.screenshot(path=str(shot), full_page=True)
        artefact(shot)
        page_cols = page.evaluate("window.__monitor.sessions[0].cols")
        page_events = page.evaluate("window.__monitor.sessions[0].events")
        status = page.evaluate("window.__monitor.sessions[0].status")
        shown_tick = page.inner_text("#session-0 [data-k=tick]")
        shown_estops = page.inner_text("#session-0 [data-k='e-stop']")
        estop_rows = page.locator("#session-0 tr[data-kind='e-stop']").count()
        assert errors == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    log = (tmp_path / "live.nlrec.log").read_text()
    assert code == EXIT_ESTOP, log[-3000:]
    rec = tmp_path / "live.nlrec"
    # the stop is recorded like any other: a fault event and a stop with the monitor's reason
    assert records(rec, "stop") == [{"reason": "estop_monitor"}]
    assert [f["reason"] for f in records(rec, "fault")] == ["estop_monitor"]
    # every tick on the page is the recorded tick (short run: no decimation)
    commands, observations = records(rec, "command"), records(rec, "observation")
    assert status["dropped"] == 0
    assert len(page_cols["tick"]) == len(commands) == len(observations) >= 120
    assert page_cols["tick"] == [c["tick"] for c in commands]
    assert page_cols["cmd_amplitude"] == [c["setpoint"]["amplitude"] for c in commands]
    assert page_cols["f:synchrony"] == [o["fields"]["synchrony"] for o in observations]
    delivered = [(o["applied"] or {"amplitude": 0.0})["amplitude"] for o in observations]
    assert page_cols["del_amplitude"] == delivered
    assert max(delivered) > 0.0
    assert shown_tick == str(commands[-1]["tick"])
    # every envelope event is a marker with its reason, and the e-stop is one too
    recorded = [(e["tick"], e["event"], e["reason"]) for e in records(rec, "envelope_event")]
    shown = [(e["tick"], e["kind"], e["reason"]) for e in page_events if e["kind"] != "e-stop"]
    assert [s for s in shown if s[1] != "stop"] == recorded
    assert any(e["reason"] == "ramp_up" for e in page_events)
    assert [e["reason"] for e in page_events if e["kind"] == "e-stop"] == ["estop_monitor"]
    assert shown_estops == "e-stop 1"
    assert estop_rows == 1
    assert status["state"] == "e-stop"
    assert status["meta"]["envelope_hash"] == records_header_hash(rec)


def records_header_hash(path: Path) -> str:
    from protocol.recording import read_recording

    return str(read_recording(path).header.meta["envelope_hash"])


def test_two_recordings_side_by_side_with_a_time_cursor(browser, tmp_path):
    for name, policy in (
        ("ftsts.nlrec", ["--policy", "ftsts"]),
        ("off.nlrec", ["--policy", "off"]),
    ):
        proc = controller(
            tmp_path, name, *policy, "--duration", "3", "--onset-ms", "1000", "--pace", "fast"
        )
        assert wait_exit(proc, tmp_path / f"{name}.log") == EXIT_OK
    import subprocess
    import sys

    from monitor_support import ROOT

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "controller.monitor_cli", str(tmp_path / "ftsts.nlrec"),
         str(tmp_path / "off.nlrec"), "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/", server, timeout_s=60)
        page = browser
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_function(
            "window.__monitor.sessions.length === 2 && "
            "window.__monitor.sessions.every(s => s.plots.length === 6)"
        )
        rows = page.evaluate("window.__monitor.sessions.map(s => s.cols.tick.length)")
        assert rows == [len(records(tmp_path / n, "command")) for n in ("ftsts.nlrec", "off.nlrec")]
        titles = page.evaluate("window.__monitor.sessions.map(s => s.status.meta.policy)")
        assert titles == ["ftsts", "off"]
        page.fill("#cursor", "500")
        page.dispatch_event("#cursor", "input")
        cursor = page.evaluate(
            "window.__monitor.plots.map(u => u.cursor.idx == null ? null : u.data[0][u.cursor.idx])"
        )
        assert len(cursor) == 12
        assert all(t is not None and abs(t - 1.49) < 0.05 for t in cursor), cursor
        assert page.inner_text("#cursor-t") == "1.49 s"
        shot = tmp_path / "monitor-recordings-side-by-side.png"
        page.screenshot(path=str(shot), full_page=True)
        artefact(shot)
    finally:
        server.terminate()
        server.wait(10)


def test_a_long_recording_is_decimated_in_the_browser(browser, tmp_path):
    """20 000 ticks (6.7 min at 50 Hz): the page holds at most 2000 points per column, keeps
    the single out-of-pattern tick visible, and a zoom brings back exact ticks."""
    import subprocess
    import sys

    from monitor_support import ROOT, wait_http
    from test_monitor_units import META, _decision, _obs

    from controller.recorder import SessionRecorder

    path = tmp_path / "long.nlrec"
    rec = SessionRecorder(path, META)
    rec.event("backend", {"kind": "sim", "name": "Fake", "lockstep": True})
    for k in range(20_000):
        amp = 150.0 if k == 12_345 else 20.0  # one outlier tick
        rec.command(k, k * 0.02, _decision(amp))
        rec.observation(k, _obs(k + 1, amp, 0.3))
        rec.timing(k, step_ms=1.0, overhead_ms=0.1, latency_ms=1.1)
    rec.event("stop", {"reason": "completed"})
    rec.close()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "controller.monitor_cli", str(path), "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/", server, timeout_s=120)
        page = browser
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_function("(window.__monitor.sessions[0]||{}).plots?.length === 6")
        n = page.evaluate("window.__monitor.sessions[0].cols.t_s.length")
        assert n <= 2000
        assert page.evaluate("window.__monitor.sessions[0].rows") == 20_000
        assert page.evaluate("Math.max(...window.__monitor.sessions[0].cols.cmd_amplitude)") == 150
        page.evaluate("window.__monitor.sessions[0].zoom(246.0, 248.0)")
        page.wait_for_function("window.__monitor.sessions[0].cols.t_s.length <= 101")
        ticks = page.evaluate("window.__monitor.sessions[0].cols.tick")
        assert ticks == list(range(12_300, 12_401))
        shot = tmp_path / "monitor-long-recording-zoomed.png"
        page.screenshot(path=str(shot), full_page=True)
        artefact(shot)
    finally:
        server.terminate()
        server.wait(10)
