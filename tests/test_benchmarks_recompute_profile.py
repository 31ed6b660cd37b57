"""Smoke run of benchmarks/recompute_profile.py: the pieces, the classed steps and the fast-start counts agree with
the runs' traces."""

import json
import os
import subprocess
import sys

import pytest

from hf_gen.trace import read_trace

ROOT = os.path.dirname(os.path.dirname(__file__))


@pytest.mark.slow
def test_recompute_profile_quick(tmp_path):
    out = tmp_path / "profile.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "recompute_profile.py"), "--quick",
                           "--json", str(out), "--out", str(tmp_path / "runs")], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    pieces = result["pieces"]
    assert len(pieces) == 9 and all(len(p["runs_s"]) == 3 and min(p["runs_s"]) > 0 for p in pieces.values())
    assert [name for name, p in pieces.items() if p["step"] == "before"] == ["copy of the parameters (LineSnapshot)"]
    # --quick times steps 3..10 at interval 4: the fits land on steps 6 and 10, their copies on 5 and 9
    trace = read_trace(tmp_path / "runs" / "steps_gen")
    assert [r["step"] for r in trace if 3 <= r["step"] <= 10] == [6, 10]
    assert {kind: len(times) for kind, times in result["steps"].items()} == {
        "plain": 8, "no GeN work": 4, "copy (before a recompute)": 2, "recompute": 2}  # fmt: skip
    runs = result["fast_start"]
    assert len(runs) == 4  # starting lrs 10^4x above and below, two probe batches
    assert {(run["lr"], run["probe"]) for run in runs} == {
        (1e-4 * f, probe) for f in (1e4, 1e-4) for probe in ("next", "same")}  # fmt: skip
    plain = result["plain_start_step_s"]
    for run in runs:
        records = read_trace(tmp_path / "runs" / f"start_{run['probe']}_{run['lr']:g}")
        assert run["fast_start_updates"] == sum(r["interval"] == 1 for r in records)
        later = [r["step"] for r in records if r["interval"] != 1]
        assert run["settled_at"] == (later[0] if later else None)
        assert run["step1_vs_plain"] == pytest.approx(run["step_s"][0] / plain[0])
        assert run["forwards_step1"] >= 1 and len(run["forwards_per_step"]) == 6
        extra = run["forwards_until_settled"] - run["trace_forwards_until_settled"]
        # same batch: every probe is in the trace; next batch: a first step that passes its check leaves no record
        assert extra == 0 if run["probe"] == "same" else extra in (0, 1)
        if run["probe"] == "same":
            assert records[0]["step"] == 1 and run["forwards_step1"] == len(records[0]["probe_losses"])
    assert done.stdout.count("| next |") == 2 and done.stdout.count("| same |") == 2
