"""benchmarks/fast_start_ends.py: each way a fast start ends, read off traces built to end that way."""

import json

import fast_start_ends


def record(step, probe_lr, lr, alpha_star, interval, one_step=None, fast=True):
    entry = {"step": step, "probe_lr": probe_lr, "lr": lr, "alpha_star": alpha_star, "interval": interval}
    if fast:
        entry.update(one_step_alpha_star=one_step, one_step_probe_losses=[[0.0, 1.0], [probe_lr, 1.0]])
    return entry


def run(seed, trace, family="gen-adamw", options=()):
    return {"family": family, "contender": f"{family}@5e-05", "seed": seed, "role": "main",
            "options": [list(o) for o in options], "gen_trace": trace}  # fmt: skip


RUNS = [
    # climbs 2x twice, then an estimate within [lr / 2, 2 lr] of the level: settled inside
    run(0, [record(9, 1e-4, 2e-4, 9e-4, 1), record(13, 2e-4, 4e-4, 8e-4, 1), record(17, 4e-4, 5e-4, 5e-4, 4)]),
    # the window asks for 10x, the last step's line (with a minimiser) holds it: a measured cap
    run(1, [record(9, 1e-4, 1.5e-4, 1e-3, 4, one_step=1.5e-4)]),
    # the same, held by a last-step line with no minimiser (a run of the old rule)
    run(2, [record(9, 1e-4, 1e-4, 1e-3, 4, one_step=None)]),
    # never settled
    run(3, [record(9, 1e-4, 2e-4, 1e-3, 1), record(13, 2e-4, 1e-4, None, 1)]),
    # 3x is outside the default bound of 2 but inside a family's bound of 4
    run(4, [record(9, 1e-4, 3e-4, 3e-4, 4, one_step=None)], options=[("gen_max_change", 4.0)]),
    # one-step lines (no last-step line on the window's batch)
    run(5, [record(9, 1e-4, 2e-4, 2e-4, 4, fast=False)], family="gen-adamw-next"),
]


def test_each_ending_is_read_off_its_trace():
    got = [fast_start_ends.ending(r) for r in RUNS]
    assert [how for how, _ in got] == ["inside", "measured-cap", "unmeasured-cap", "never", "inside", "other"]
    assert [None if at is None else at["step"] for _, at in got] == [17, 9, 9, None, 9, 9]


def test_the_command_lists_and_counts(tmp_path, capsys):
    path = tmp_path / "r.json"
    untraced = {"family": "gen-adamw", "contender": "gen-adamw@5e-05", "seed": 9, "role": "main"}
    path.write_text(json.dumps({"tasks": {"t": {"runs": [*RUNS, untraced]}}, "meta": {}}))
    fast_start_ends.main(["--files", str(path), "--ended", "unmeasured-cap"])
    assert capsys.readouterr().out.splitlines() == ["r.json t gen-adamw@5e-05 seed 2 (main) at step 9, lr 0.0001"]
    fast_start_ends.main(["--files", str(path), "--families", "gen-adamw"])
    assert capsys.readouterr().out.splitlines()[-1] == "| r.json | t | 2 | 1 | 1 | 1 | 0 |"
