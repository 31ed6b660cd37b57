"""Smoke run of benchmarks/overhead.py: every setting runs and the table's arithmetic is what it says."""

import json
import os
import subprocess
import sys

import pytest

from hf_gen.trace import read_trace

ROOT = os.path.dirname(os.path.dirname(__file__))


@pytest.mark.slow
def test_overhead_quick_runs_every_setting(tmp_path):
    out = tmp_path / "overhead.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "overhead.py"), "--quick", "--json",
                           str(out), "--out", str(tmp_path / "runs")], env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    rows = {r["setting"]: r for r in result["rows"]}
    assert len(rows) == 12 and rows["plain Trainer, constant lr"]["overhead"] == 0.0
    plain = rows["plain Trainer, constant lr"]["step_s"]
    for r in rows.values():
        assert r["step_s"] > 0 and len(r["runs_s"]) == 1
        assert r["overhead"] == pytest.approx(r["step_s"] / plain - 1)
        if r["limit"] is not None:
            assert r["ratio"] == pytest.approx(r["overhead"] / r["limit"])
    assert rows["GeN approx, interval 4"]["limit"] == pytest.approx(result["reference_s"]["forward"] / 4 / plain)
    averages = rows["GeN approx, averages (default)"]  # three forwards per line through two windows' means
    assert averages["limit_is"] == "3 forwards" and averages["recomputes_per_step"] > 0
    assert averages["limit"] == pytest.approx(result["reference_s"]["forward"] * 3 * averages["recomputes_per_step"]
                                              / plain)  # fmt: skip
    assert "| GeN exact, interval 4 |" in done.stdout
    assert rows["plain Trainer, constant lr"]["overhead_step_medians"] == 0.0
    # recomputes per step: counted in the timed window (steps 3..10 of --quick), at a fixed interval 1 / interval
    window = range(3, 11)
    for name, interval in (("interval 1", 1), ("interval 4", 4), ("interval 8", 8)):
        row = rows[f"GeN approx, {name}"]
        trace = read_trace(tmp_path / "runs" / ("GeN_approx__" + "".join(c if c.isalnum() else "_" for c in name)))
        assert row["recompute_steps"] == [[r["step"] for r in trace if r["step"] in window]]
        assert row["recomputes_per_step"] == pytest.approx(1 / interval)
    adaptive = rows["GeN approx, adaptive 4..32"]
    assert 0 < adaptive["recomputes_per_step"] <= 0.25
    forward = result["reference_s"]["forward"]
    assert adaptive["limit"] == pytest.approx(forward * adaptive["recomputes_per_step"] / plain)
    # the default from its start: each fast-start line is three forwards for the windows and one for the last step
    name = "GeN approx, averages (default), fast start"
    start = rows[name]
    trace = read_trace(tmp_path / "runs" / "".join(c if c.isalnum() else "_" for c in name))
    measured = [r for r in trace if r["step"] in window]
    assert measured and all(len(r["probe_losses"]) == 3 and len(r["one_step_probe_losses"]) == 2 for r in measured)
    assert start["limit_is"] == "4 forwards"
    assert start["limit"] == pytest.approx(forward * 4 * len(measured) / len(window) / plain)
    assert rows["gen-optim (authors), interval 4"]["recompute_steps"] == [[4, 8]]
    # windows of 10 steps: the first line closes the second window, after step 20, past this 10-step run
    assert rows["GeN approx, averages (default), windows of 10"]["recompute_steps"] == [[]]
    assert rows["GeN approx, averages (default)"]["recompute_steps"] != [[]]  # windows of 4 do measure in it
    assert "| GeN approx, adaptive 4..16 |" in done.stdout and "recomputes per step" in done.stdout
