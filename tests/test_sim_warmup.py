"""The server compiles every kernel a session uses before it is ready, and says so as it goes.

The test case is the newcomer's: an empty Numba cache (a new process with its own
``NUMBA_CACHE_DIR``), then the quick start's session (the default network, stimulation off,
ramped on, held, switched off), during which nothing may compile.
"""

from __future__ import annotations

import json

SESSION = """
import json
import structlog
from simulator.server import SimulatorBackend
from simulator.warmup import CompileWatch

with structlog.testing.capture_logs() as logs:
    backend = SimulatorBackend()
    backend.warm_up()
watch = CompileWatch("session").install()
backend._on_configure({}, 20.0)
backend._on_reset(0)
on = {"frequency_hz": 1000.0 / 12.0, "pulse_width_us": 1000.0, "ei_offset_ms": 0.0}
for amplitude_mv in (0, 0, 20, 40, 60, 80, 100, 100, 100, 0, 0):
    stimulus = None if amplitude_mv == 0 else {"amplitude_mv": float(amplitude_mv), **on}
    backend._on_step(stimulus, 20.0, False)
watch.uninstall()
print(json.dumps({"warm_up": [dict(e) for e in logs], "session": watch.compiled}))
"""


def test_a_session_after_the_warm_up_compiles_nothing_even_with_an_empty_cache(fresh_python):
    out = json.loads(fresh_python(SESSION).splitlines()[-1])
    assert out["session"] == []
    events = [e["event"] for e in out["warm_up"]]
    # Announced before it starts, one line per kernel as it compiles, a summary at the end.
    assert events[0] == "simulator_compiling"
    assert events[-1] == "simulator_warmed_up"
    compiled = [e for e in out["warm_up"] if e["event"] == "compiled"]
    assert "run_steps" in {e["kernel"] for e in compiled}
    assert [e["done"] for e in compiled] == list(range(1, len(compiled) + 1))
    assert out["warm_up"][-1]["kernels_compiled"] == len(compiled)
    # A long compilation shows progress: the kernels it calls, as they finish.
    parts = [e for e in out["warm_up"] if e["event"] == "compiled_part"]
    assert "run_steps" in {e["within"] for e in parts}
    # The second start (same cache) loads every kernel: nothing compiles at all.
    again = json.loads(fresh_python(SESSION).splitlines()[-1])
    assert again["session"] == []
    assert again["warm_up"][-1]["kernels_compiled"] == 0
