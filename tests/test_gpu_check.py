"""``benchmarks/gpu_check.sh --dry_run``: the GPU check's every step runs on CPU at toy sizes, so the script a GPU
machine runs is not dead code."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from overhead import SETTINGS as OVERHEAD_SETTINGS

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_dry_run_runs_every_step_and_writes_one_folder(tmp_path):
    out = tmp_path / "gpu_check"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry_run", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = (out / "summary.txt").read_text().splitlines()
    steps = {line.split()[0]: line for line in summary}
    assert list(steps) == ["environment", "bf16_finetune", "fsdp2_trainer", "overhead", "recompute_profile",
                           "size_sweep", "memory"]  # fmt: skip
    assert all(" status 0 " in line for line in summary)
    overhead = json.loads((out / "overhead.json").read_text())
    assert [row["setting"] for row in overhead["rows"]] == list(OVERHEAD_SETTINGS)  # every setting, in order
    assert "GeN approx, averages (default), fast start" in {row["setting"] for row in overhead["rows"]}
    memory = (out / "memory.txt").read_text()
    assert (
        "| GeN approx (default: averages) |" in memory and "| GeN approx (default: averages), fast start |" in memory
    )
    sweep = json.loads((out / "size_sweep.json").read_text())
    assert (out / "size_sweep.png").stat().st_size > 0 and sweep
    assert json.loads((out / "recompute_profile.json").read_text())
    for run in ("bf16_finetune", "fsdp2_trainer"):
        result = json.loads((out / run / "run_summary.json").read_text())
        assert result["gen_updates"] > 0, run
    finetune = json.loads((out / "bf16_finetune" / "run_summary.json").read_text())
    assert "--bf16" in finetune["command"] and (finetune["distributed_type"], finetune["world_size"]) == ("NO", 1)
    # on CPU accelerate trains the FSDP command with DDP over the two processes (on a GPU the check requires FSDP)
    fsdp = json.loads((out / "fsdp2_trainer" / "run_summary.json").read_text())
    assert (fsdp["distributed_type"], fsdp["world_size"]) == ("MULTI_CPU", 2)
