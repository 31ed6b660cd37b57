"""Smoke run of benchmarks/size_sweep.py at toy sizes: a row per size, and the table's arithmetic from the raw runs."""

import json
import os
import statistics
import subprocess
import sys

import pytest

from hf_gen.trace import read_trace

ROOT = os.path.dirname(os.path.dirname(__file__))


@pytest.mark.slow
def test_size_sweep_quick(tmp_path):
    out, png = tmp_path / "sweep.json", tmp_path / "sweep.png"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "size_sweep.py"), "--quick", "--json",
                           str(out), "--plot", str(png), "--out", str(tmp_path / "runs")], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert [(r["vocab"], r["n_embd"], r["n_layer"]) for r in rows] == [(256, 32, 1), (1024, 64, 2)]
    assert rows[0]["params"] < rows[1]["params"]
    for r in rows:
        runs = result["runs"][str(r["size"])]
        plain, gen = runs["plain Trainer, constant lr"], runs[r["setting"]]
        assert r["plain_s"] == plain[0]["step_s"] and r["gen_s"] == gen[0]["step_s"]
        assert r["overhead"] == pytest.approx(r["gen_s"] / r["plain_s"] - 1)
        # the limit: the median no-grad forward at this size, once per counted recompute, over the plain step
        forwards = sorted(t for results in runs.values() for run in results for t in run["forward_s"])
        assert len(forwards) == 6 and r["forward_s"] == pytest.approx((forwards[2] + forwards[3]) / 2)
        trace = read_trace(tmp_path / "runs" / f"size{r['size']}" / "GeN_approx__interval_4")
        assert gen[0]["recompute_steps"] == [t["step"] for t in trace if 3 <= t["step"] <= 10] == [6, 10]
        assert r["recomputes_per_step"] == 0.25
        assert r["limit"] == pytest.approx(r["forward_s"] * 0.25 / r["plain_s"])
        assert r["ratio"] == pytest.approx(r["overhead"] / r["limit"])
        by_medians = gen[0]["step_medians_s"] / plain[0]["step_medians_s"] - 1
        assert r["overhead_step_medians"] == pytest.approx(by_medians)
        assert r["ratio_step_medians"] == pytest.approx(by_medians / r["limit"])
        assert len(gen[0]["durations_s"]) == 8
        assert plain[0]["step_medians_s"] == pytest.approx(statistics.median(plain[0]["durations_s"]))
        assert r["rss_over_plain_mb"] == pytest.approx(gen[0]["rss_mb"] - plain[0]["rss_mb"])
        assert r["copies"] == pytest.approx(r["rss_over_plain_mb"] / r["param_mb"])
        assert f"| {r['params'] / 1e6:.2f}M ({r['vocab']}, {r['n_embd']}, {r['n_layer']}) |" in done.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
