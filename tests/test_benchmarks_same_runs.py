"""``same_runs.py``: two results files are the same runs only when every run matches exactly, and a difference of
one unit in the last place of one step's lr is caught."""

import json
import math

import same_runs


def results(path, runs):
    path.write_text(json.dumps({"tasks": {"t": {"runs": runs}}, "meta": {}}))
    return str(path)


def run(contender, seed, lrs, loss=0.5):
    return {"contender": contender, "seed": seed, "eval_loss": loss, "metric": 0.9, "train_loss": 0.6,
            "steps": len(lrs), "lr_trace": lrs}  # fmt: skip


def test_identical_runs_pass_and_any_difference_fails(tmp_path, capsys):
    lrs = [5e-5, 1e-4, 2e-4, 2e-4]
    before = results(tmp_path / "a.json", [run("gen-adamw@5e-05", 0, lrs), run("gen-adamw@5e-05", 1, lrs)])
    same = results(tmp_path / "b.json", [run("gen-adamw@5e-05", 1, list(lrs)), run("gen-adamw@5e-05", 0, list(lrs))])
    assert same_runs.main([before, same]) == 0  # the order of the runs does not matter
    out = capsys.readouterr().out
    assert "| t | gen-adamw@5e-05 | 0 | 4 | 3 | 0.500000 | yes |" in out and "2 of 2 runs the same" in out
    nudged = list(lrs)
    nudged[2] = math.nextafter(nudged[2], 1.0)  # one unit in the last place at one step
    other = results(tmp_path / "c.json", [run("gen-adamw@5e-05", 0, nudged), run("gen-adamw@5e-05", 1, lrs, 0.5001)])
    assert same_runs.main([before, other]) == 1
    out = capsys.readouterr().out
    assert "| t | gen-adamw@5e-05 | 0 | 4 | 3 | 0.500000 | **no**: lr_trace |" in out
    assert "| t | gen-adamw@5e-05 | 1 | 4 | 3 | 0.500000 | **no**: eval_loss |" in out and "0 of 2 runs" in out
    missing = results(tmp_path / "d.json", [run("gen-adamw@5e-05", 0, lrs)])
    assert same_runs.main([before, missing]) == 1
    assert "| 1 | 4 | 3 | 0.500000 | **no**: missing |" in capsys.readouterr().out
