"""Several processes for real: torchrun over gloo on CPU."""

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(__file__)


def launch(tmp_path, script, *args, nproc=2):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    # --standalone: a local rendezvous on a port the launcher picks itself (no race for a free port)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           os.path.join(HERE, script), *map(str, args)]  # fmt: skip
    if nproc == 1:
        cmd = [sys.executable, os.path.join(HERE, script), *map(str, args)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    errors = [line for line in done.stderr.splitlines() if "Error" in line or "error:" in line]
    assert done.returncode == 0, "\n".join(errors[:20]) + "\n...\n" + done.stderr[-2000:]


def load(path, rank):
    with open(f"{path}.{rank}") as handle:
        return json.load(handle)


@pytest.mark.parametrize("gen_mode", ["approx-next", "approx-same", "approx-averages", "exact"])
def test_ddp_ranks_agree_and_match_one_process_on_the_global_batch(tmp_path, gen_mode):
    launch(tmp_path, "dist_worker.py", tmp_path / "single.json", "single", gen_mode, 4, nproc=1)
    launch(tmp_path, "dist_worker.py", tmp_path / "ddp.json", "ddp", gen_mode, 4)
    single, r0, r1 = load(tmp_path / "single.json", 0), load(tmp_path / "ddp.json", 0), load(tmp_path / "ddp.json", 1)
    assert r0["world"] == r1["world"] == 2
    assert r0["lrs"] == r1["lrs"]  # every rank applies the same lr at every step
    assert r0["weights"] == r1["weights"]  # and the replicas stay identical
    # 6 training forwards, then one forward per probe point (approx: the step's point, or the previous weights on
    # the next batch, plus the fast start's search points, the same on every rank) or one forward-with-HVP (exact)
    # per step; out of sample, the first step's own batch is also checked once (no record when it passes).
    assert r0["probe_points"] == r1["probe_points"] == single["probe_points"]
    probe_forwards = sum(single["probe_points"]) if gen_mode != "exact" else 6
    # passed: 5 records, steps 2-6 (next); the averages scheme only measures window lines after it
    first_check = gen_mode == "approx-averages" or (gen_mode == "approx-next" and len(single["probe_points"]) == 5)
    assert r0["forwards"] == r1["forwards"] == single["forwards"] == 6 + probe_forwards + first_check
    assert r0["lrs"] == pytest.approx(single["lrs"], rel=1e-12)
    if gen_mode == "approx-averages":  # one-step windows: a line through two means (three forwards) on steps 3-6,
        # and during the fast start the last step's line too (one forward)
        assert single["probe_points"][0] == 4 and set(single["probe_points"]) <= {3, 4}
        assert len(single["probe_points"]) == 4
    assert len(set(single["lrs"])) > 3  # GeN moved the lr
    for name, values in single["weights"].items():
        assert r0["weights"][name] == pytest.approx(values, rel=1e-9, abs=1e-12)


def ddp_against_one_process(tmp_path, mode, global_batch=4):
    """The worker run by one process on the global batch (4) and by two DDP ranks on half of it each: both ranks agree
    exactly, and take the lrs and weights of the single process. Returns the single run and rank 0's."""
    launch(tmp_path, "dist_worker.py", tmp_path / "single.json", "single", mode, global_batch, nproc=1)
    launch(tmp_path, "dist_worker.py", tmp_path / "ddp.json", "ddp", mode, global_batch)
    single, r0, r1 = load(tmp_path / "single.json", 0), load(tmp_path / "ddp.json", 0), load(tmp_path / "ddp.json", 1)
    assert r0["world"] == r1["world"] == 2
    assert r0["lrs"] == r1["lrs"] and r0["weights"] == r1["weights"]
    assert r0["lrs"] == pytest.approx(single["lrs"], rel=1e-12) and len(set(single["lrs"])) > 3
    for name, values in single["weights"].items():
        assert r0["weights"][name] == pytest.approx(values, rel=1e-9, abs=1e-12)
    return single, r0


def test_ddp_ranks_charge_the_lines_with_the_jitter_cost_one_process_charges(tmp_path):
    # gen_jitter_cost: each line is charged from the reduced training loss and the reduced probes, so every rank
    # charges what one process charges on the global batch and applies its lr.
    single, r0 = ddp_against_one_process(tmp_path, "approx-averages-jitter")
    assert sum(cost > 0 for cost in single["jitter_costs"]) >= 2
    assert r0["jitter_costs"] == pytest.approx(single["jitter_costs"], rel=1e-9, abs=1e-12)


def test_ddp_ranks_take_back_the_same_window_as_one_process(tmp_path):
    # gen_undo_lost_windows: each rank keeps its own batches' training losses; at the window's close they are averaged
    # over the ranks step by step, so the ranks decide together, and take back the window one process takes back on
    # the global batch, with the same mean losses and standard error.
    single, r0 = ddp_against_one_process(tmp_path, "approx-averages-undo")
    assert [step for step, *_ in single["lost"]] == [step for step, *_ in r0["lost"]] == [21]
    assert [*r0["lost"][0][1], r0["lost"][0][2]] == pytest.approx([*single["lost"][0][1], single["lost"][0][2]],
                                                                  rel=1e-9)  # fmt: skip


def test_fsdp2_shards_take_the_same_line_steps_as_an_unsharded_replica(tmp_path):
    launch(tmp_path, "fsdp_line_worker.py", tmp_path / "line.json")
    for rank in (0, 1):
        r = load(tmp_path / "line.json", rank)
        assert r["sharded"] and r["local_numel"] < r["total_numel"]
        assert r["slope"] == pytest.approx(r["ref_slope"], rel=1e-12)
        assert r["probe"] == pytest.approx(r["ref_probe"], rel=1e-12)
        assert r["max_weight_diff"] < 1e-14
        # second step, moving along the line without a second copy (the fast start's search)
        assert r["probe2"] == pytest.approx(r["ref_probe2"], rel=1e-12)
        assert r["max_weight_diff2"] < 1e-13
        assert r["plain_dot"] == 3.0
        # the default scheme's pieces: window means summed on the shards, the line through them, a slope on it
        assert r["max_window_mean_diff"] < 1e-14 and r["max_window_weight_diff"] == 0.0
        assert r["window_losses"] == pytest.approx(r["ref_window_losses"], rel=1e-12)
        assert len(set(r["window_losses"])) == 3
        assert r["witness"] == pytest.approx(r["ref_witness"], rel=1e-12) and r["witness"] != 0.0
        assert r["means_restored"]
    assert load(tmp_path / "line.json", 0)["local_numel"] + load(tmp_path / "line.json", 1)["local_numel"] == 37
