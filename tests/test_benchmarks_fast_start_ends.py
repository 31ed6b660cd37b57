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


def test_against_best_gives_the_settled_level_over_the_best_grid_lr_and_the_loss_against_it(tmp_path, capsys):
    def grid(contender, family, lr, losses):
        return [{"family": family, "contender": contender, "lr": lr, "seed": seed, "role": "main", "eval_loss": loss,
                 "metric": 0.5, "wall_s": 1.0} for seed, loss in enumerate(losses)]  # fmt: skip

    # the best grid point is the lowest mean eval loss (3e-4: 0.8; 1e-3: 0.9; the constant 1e-4 run: 1.0)
    runs = [*grid("adamw-linear@0.0003", "adamw-linear", 3e-4, [0.7, 0.9]),
            *grid("adamw-linear@0.001", "adamw-linear", 1e-3, [0.9]),
            *grid("adamw-constant@0.0001", "adamw-constant", 1e-4, [1.0])]  # fmt: skip
    measured = {"lr": 5e-5, "metric": 0.5, "wall_s": 1.0}
    settled = {**RUNS[0], **measured, "eval_loss": 1.0}  # settled inside at step 17 at level 5e-4
    never = {**RUNS[3], **measured, "eval_loss": 0.6}
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"tasks": {"t": {"runs": [*runs, settled, never]}}, "meta": {}}))
    fast_start_ends.main(["--files", str(path), "--against-best"])
    lines = capsys.readouterr().out.splitlines()
    # 5e-4 / 3e-4 = 1.67; (1.0 - 0.8) / 0.8 = +25.0%; (0.6 - 0.8) / 0.8 = -25.0%
    assert lines[2:] == [
        "| r.json | t | gen-adamw@5e-05 | 0 | inside | 0.0005 | 1.67 | +25.0% (adamw-linear@0.0003) |",
        "| r.json | t | gen-adamw@5e-05 | 3 | never | - | - | -25.0% (adamw-linear@0.0003) |",
    ]


def test_settled_lines_are_the_lines_after_the_fast_start_with_the_way_each_pointed(tmp_path, capsys):
    def line(step, level, estimate, fallback=None):
        return {**record(step, level, level, estimate, 4, fast=False), "fallback": fallback}

    after = [
        line(27, 5e-4, 2.5e-4),  # c* = 0.5: lower
        line(37, 4e-4, 1.2e-3),  # c* = 3: higher
        line(47, 5e-4, 5e-4),  # c* = 1: neither
        line(57, 5e-4, None, "not_descent"),  # lower, no c*
        line(67, 4e-4, None, "nonpositive_curvature"),  # higher, no c*
        line(77, 4e-4, None, "below_precision"),  # neither
    ]
    settled = run(0, [*RUNS[0]["gen_trace"], *after])  # the fast start settles at step 17
    assert [d for d, _ in fast_start_ends.settled_lines(settled)] == ["lower", "higher", "other", "lower", "higher",
                                                                      "other"]  # fmt: skip
    assert fast_start_ends.settled_lines(RUNS[3]) == []  # never settled: no settled line
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"tasks": {"t": {"runs": [settled, RUNS[3]]}}, "meta": {}}))
    fast_start_ends.main(["--files", str(path), "--settled-lines"])
    # 6 lines: 2 lower, 2 higher; the median of c* = 0.5, 3 and 1 is 1
    assert capsys.readouterr().out.splitlines()[-1] == "| r.json | t | 6 | 0.33 | 0.33 | 1.00 |"


def test_departs_from_gives_the_first_step_off_the_same_seeds_reference_and_its_phase(tmp_path, capsys):
    reference = {**RUNS[0], "lr": 5e-5, "eval_loss": 1.0, "lr_trace": [5e-5] * 8 + [1e-4] * 4 + [2e-4] * 8}
    # the fast start of the reference ended at step 17 (RUNS[0]); the same lrs to step 16, then off
    at_end = {**reference, "family": "x", "contender": "x@5e-05", "eval_loss": 0.9,
              "lr_trace": reference["lr_trace"][:16] + [3e-4] * 4}  # fmt: skip
    later = {**at_end, "seed": 1, "eval_loss": 0.8, "lr_trace": reference["lr_trace"][:18] + [3e-4] * 2}
    same = {**at_end, "seed": 2, "eval_loss": 1.0, "lr_trace": list(reference["lr_trace"])}
    alone = {**at_end, "seed": 3, "lr_trace": [1.0] * 20}  # no reference run with seed 3: not listed
    references = [reference, {**reference, "seed": 1}, {**reference, "seed": 2}]
    assert fast_start_ends.departure(at_end, reference) == (17, "fast start")
    assert fast_start_ends.departure(later, reference) == (19, "settled")
    assert fast_start_ends.departure(same, reference) == (None, "none")
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"tasks": {"t": {"runs": [*references, at_end, later, same, alone]}}, "meta": {}}))
    fast_start_ends.main(["--files", str(path), "--departs-from", "gen-adamw", "--families", "x"])
    assert capsys.readouterr().out.splitlines()[2:] == [
        "| t | 0 | x@5e-05 | 17 | fast start | 0.9000 | 1.0000 |",
        "| t | 1 | x@5e-05 | 19 | settled | 0.8000 | 1.0000 |",
        "| t | 2 | x@5e-05 | - | none | 1.0000 | 1.0000 |",
    ]


def test_level_response_fits_log_c_star_on_the_level_and_the_runs_progress(tmp_path, capsys):
    import math

    import pytest
    import torch

    best = {"family": "adamw-linear", "contender": "adamw-linear@0.0003", "lr": 3e-4, "seed": 0, "role": "main",
            "eval_loss": 0.5, "metric": 0.5, "wall_s": 1.0}  # fmt: skip

    def settled_run(seed, points, noise=()):
        # the fast start settles at step 17 (RUNS[0]); each later line at (level, step) has
        # log c* = 0.2 - 0.6 log(level / 3e-4) - 1.5 step / 100, plus the given noise
        lines = []
        for k, (level, step) in enumerate(points):
            c = math.exp(0.2 - 0.6 * math.log(level / 3e-4) - 1.5 * step / 100 + (noise[k] if noise else 0.0))
            lines.append({**record(step, level, level, c * level, 4, fast=False), "fallback": None})
        lines.append({**record(99, 3e-4, 3e-4, None, 4, fast=False), "fallback": "not_descent"})  # no c*: left out
        return {**run(seed, [*RUNS[0]["gen_trace"], *lines]), "lr": 5e-5, "steps": 100, "eval_loss": 0.6,
                "metric": 0.5, "wall_s": 1.0}  # fmt: skip

    points = [(6e-4, 25), (3e-4, 40), (4.5e-4, 55), (1.5e-4, 70), (2e-4, 85), (9e-4, 90)]
    exact = settled_run(0, points)
    response, error, trend, sd = fast_start_ends.level_response(
        [
            (level / 3e-4, step / 100, e["alpha_star"] / level)
            for (level, step), e in zip(points, exact["gen_trace"][3:], strict=False)
        ]  # fmt: skip
    )
    assert (response, trend) == pytest.approx((-0.6, -1.5), abs=1e-9)
    assert error == pytest.approx(0.0, abs=1e-7) and sd == pytest.approx(0.0, abs=1e-7)
    # With noise the fit is the least-squares one: torch's solver on the same design is the oracle.
    noise = [0.3, -0.2, 0.1, 0.4, -0.5, 0.05]
    noisy = settled_run(1, points, noise)
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"tasks": {"t": {"runs": [best, noisy]}}, "meta": {}}))
    fast_start_ends.main(["--files", str(path), "--level-response"])
    design = torch.tensor([[1.0, math.log(level / 3e-4), step / 100] for level, step in points], dtype=torch.float64)
    target = torch.tensor([0.2 - 0.6 * math.log(level / 3e-4) - 1.5 * step / 100 + n
                           for (level, step), n in zip(points, noise, strict=True)], dtype=torch.float64)  # fmt: skip
    coef = torch.linalg.lstsq(design, target.unsqueeze(1)).solution.squeeze(1)
    residual = target - design @ coef
    variance = float(residual @ residual) / 3
    error = math.sqrt(variance * float(torch.linalg.inv(design.T @ design)[1, 1]))
    expected = (f"| r.json | t | 6 | {float(coef[1]):+.2f} ± {error:.2f} | {float(coef[2]):+.2f} | "
                f"{math.sqrt(variance):.2f} |")  # fmt: skip
    assert capsys.readouterr().out.splitlines()[-1] == expected
    assert fast_start_ends.level_response([(1.0, 0.1, 1.0)] * 5) is None  # nothing varies: no fit


def test_noise_counts_the_fast_start_lines_resolved_and_the_moves_taken_on_the_others(tmp_path, capsys):
    from hf_gen.core import student_t_quantile

    threshold = student_t_quantile(2.0, 15)  # the runs' test at two standard errors, 16 chunks: 2.2

    def tested(step, probe_lr, lr, alpha_star, interval, t, one_step=None):
        return {**record(step, probe_lr, lr, alpha_star, interval, one_step=one_step), "noise_t": t,
                "noise_chunks": 16}  # fmt: skip

    # From 5e-5: held on an unresolved line (no move), doubled on an unresolved one, doubled on a resolved one, then
    # settled inside on a resolved line; a settled line after it is not tested.
    first = [tested(9, 5e-5, 5e-5, None, 1, 0.5), tested(13, 5e-5, 1e-4, None, 1, threshold - 0.01),
             tested(17, 1e-4, 2e-4, 9e-4, 1, threshold + 0.01), tested(21, 2e-4, 3e-4, 3e-4, 4, 3.0),
             record(29, 3e-4, 3e-4, 3e-4, 4, fast=False)]  # fmt: skip
    # A second run whose fast start ended on an unresolved line (its statistic not finite: None, no difference).
    second = [tested(9, 5e-5, 4e-5, 4e-5, 4, None)]
    runs = [{**run(0, first), "lr": 5e-5}, {**run(1, second), "lr": 5e-5}, {**run(2, first), "lr": 5e-5,
            "family": "gen-adamw-next"}]  # fmt: skip
    assert fast_start_ends.noise_lines(runs[0]) == [
        (0.5, False, False, False),
        (threshold - 0.01, False, True, False),
        (threshold + 0.01, True, True, False),
        (3.0, True, True, True),
    ]
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"tasks": {"t": {"runs": runs}}, "meta": {}}))
    fast_start_ends.main(["--files", str(path), "--noise", "--families", "gen-adamw"])
    # 5 lines; median of (0.5, 2.2 - 0.01, 2.2 + 0.01, 3.0, 0.0) is 2.2 - 0.01; 2 resolved; 4 moves, 2 on unresolved
    # lines (13 and the second run's 9); one run of two ended on a resolved line
    median = f"{threshold - 0.01:.2f}"
    row = f"| r.json | t | 2 | 5 | {median} | 2 of 5 | 2 of 4 | 1 of 2 |"
    assert capsys.readouterr().out.splitlines()[2:] == [row]
    # a trace without the chunks: the verdict the run acted on (a held line, or one taken)
    held = {**record(9, 5e-5, 5e-5, None, 1), "noise_t": 3.0, "fallback": "below_noise"}
    taken = {**record(13, 5e-5, 1e-4, None, 1), "noise_t": 1.0, "fallback": None}
    assert [r for _, r, _, _ in fast_start_ends.noise_lines({**run(0, [held, taken]), "lr": 5e-5})] == [False, True]
