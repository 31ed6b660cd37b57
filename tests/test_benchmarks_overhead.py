"""Smoke run of benchmarks/overhead.py: every setting runs and the table's arithmetic is what it says."""

import json
import os
import subprocess
import sys

import pytest

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
    assert len(rows) == 6 and rows["plain Trainer, constant lr"]["overhead"] == 0.0
    plain = rows["plain Trainer, constant lr"]["step_s"]
    for r in rows.values():
        assert r["step_s"] > 0 and len(r["runs_s"]) == 1
        assert r["overhead"] == pytest.approx(r["step_s"] / plain - 1)
        if r["limit"] is not None:
            assert r["ratio"] == pytest.approx(r["overhead"] / r["limit"])
    assert rows["GeN approx, interval 4 (default)"]["limit"] == pytest.approx(
        result["reference_s"]["forward"] / 4 / plain
    )
    assert "| GeN exact, interval 4 |" in done.stdout
    # GeN wrote its trace in the runs it made
    assert os.path.exists(tmp_path / "runs" / "GeN_approx__interval_1" / "gen_trace.jsonl")
