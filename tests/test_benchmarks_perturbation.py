"""benchmarks/perturbation.py: the perturbation moves weights by at most their last bits, the spreads and the
comparison with the grid point match their closed forms, and a real run writes files that --render reproduces."""

import json

import perturbation
import pytest
import torch


def test_the_perturbation_moves_weights_within_their_last_bits():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(50, 40), torch.nn.Tanh(), torch.nn.Linear(40, 3))
    before = [p.detach().clone() for p in model.parameters()]
    scale = 2.0**-23
    perturbation.perturbed(model, scale, 11)
    after = [p.detach().clone() for p in model.parameters()]
    changed = total = 0
    for old, new in zip(before, after, strict=True):
        assert new.dtype == old.dtype == torch.float32
        # |z| < 6 for 2,200 standard normals; rounding back to float32 adds at most half an ulp (2^-24 relative)
        bound = (6 * scale + 2.0**-24) * old.abs() + torch.finfo(torch.float32).tiny
        assert bool(((new - old).abs() <= bound).all())
        changed += int((new != old).sum())
        total += old.numel()
    assert 0.2 * total < changed < total  # most weights move by one ulp, not all
    again = torch.nn.Sequential(torch.nn.Linear(50, 40), torch.nn.Tanh(), torch.nn.Linear(40, 3))
    for target, old in zip(again.parameters(), before, strict=True):
        target.data.copy_(old)
    perturbation.perturbed(again, scale, 11)
    assert all(torch.equal(a, b) for a, b in zip(again.parameters(), after, strict=True))  # same generator seed
    perturbation.perturbed(again, scale, 12)
    assert not all(torch.equal(a, b) for a, b in zip(again.parameters(), after, strict=True))


def test_spreads_and_the_comparison_match_their_closed_forms():
    gen, last, grid = "gen-adamw@5e-05", "gen-adamw-last@5e-05", "adamw-linear@0.03"
    losses = {  # (contender, seed, perturbation) -> eval loss
        (gen, 0, 0): 1.0, (gen, 0, 1): 1.2, (gen, 0, 2): 0.9,
        (gen, 1, 0): 2.0, (gen, 1, 1): 2.0, (gen, 1, 2): 2.0,
        (grid, 0, 0): 1.5, (grid, 0, 1): 1.5, (grid, 0, 2): 1.5,
        (grid, 1, 0): 1.5, (grid, 1, 1): 1.5, (grid, 1, 2): 1.5,
        (last, 0, 0): 0.75, (last, 1, 0): 0.75,  # another GeN family, unperturbed only
    }  # fmt: skip
    records = [{"task": "t", "contender": c, "seed": s, "perturbation": k, "eval_loss": v}
               for (c, s, k), v in losses.items()]  # fmt: skip
    rows = {row["contender"]: row for row in perturbation.summarise(records)}
    ours = rows[gen]
    assert ours["mean_unperturbed"] == pytest.approx(1.5)
    assert ours["mean_min"] == pytest.approx(1.45) and ours["mean_max"] == pytest.approx(1.6)
    assert ours["seed_spread_max"] == pytest.approx(0.3)  # (1.2 - 0.9) / median 1.0
    assert ours["seed_spread_median"] == pytest.approx(0.15)  # median of 0.3 and 0.0
    assert rows[grid]["seed_spread_max"] == 0
    against = {row["gen"]: row for row in perturbation.against_best(records)}
    assert set(against) == {gen, last} and {row["best"] for row in against.values()} == {grid}
    assert against[gen]["unperturbed"] == pytest.approx(0.0)
    assert against[gen]["low"] == pytest.approx(1.45 / 1.5 - 1) and against[gen]["high"] == pytest.approx(
        1.6 / 1.5 - 1
    )
    assert against[last]["low"] == against[last]["high"] == pytest.approx(-0.5)  # only the pairs both ran
    # a task merged from files run when another grid point was best: each GeN run against each grid point it shares
    # (seed, perturbation) runs with, and a grid point with none left out
    other, lone = "adamw-cosine-warmup@0.03", "adamw-cosine@0.1"
    records += [{"task": "t", "contender": other, "seed": s, "perturbation": 0, "eval_loss": 3.0} for s in (0, 1)]
    records += [{"task": "t", "contender": lone, "seed": 7, "perturbation": 0, "eval_loss": 1.0}]
    pairs = {(row["gen"], row["best"]): row for row in perturbation.against_best(records)}
    assert set(pairs) == {(gen, grid), (last, grid), (gen, other), (last, other)}
    assert pairs[gen, other]["low"] == pairs[gen, other]["high"] == pytest.approx(1.5 / 3.0 - 1)  # perturbation 0
    assert pairs[last, other]["unperturbed"] == pytest.approx(0.75 / 3.0 - 1)


def test_a_real_run_and_its_render(tmp_path, monkeypatch):
    monkeypatch.setitem(perturbation.PROFILES, "digits", {"steps": 12, "options": {}})
    out = tmp_path / "p.json"
    perturbation.main(["--tasks", "digits", "--seeds", "1", "--perturbations", "1", "--json", str(out),
                       "--contender", "digits=adamw-cosine-warmup@0.03",  # the row's best point (at 300 steps)
                       "--markdown", str(tmp_path / "p.md"),
                       "--threads", str(torch.get_num_threads())])  # keeps the process thread count  # fmt: skip
    data = json.loads(out.read_text())
    assert {(r["contender"], r["perturbation"]) for r in data["records"]} == {
        ("gen-adamw@5e-05", 0), ("gen-adamw@5e-05", 1),
        ("adamw-cosine-warmup@0.03", 0), ("adamw-cosine-warmup@0.03", 1),
    }  # fmt: skip
    assert all(r["eval_loss"] > 0 for r in data["records"])
    perturbation.main(["--render", str(out), "--markdown", str(tmp_path / "r.md")])
    assert (tmp_path / "r.md").read_text() == (tmp_path / "p.md").read_text()


def test_a_bad_contender_says_what_to_pass(capsys):
    with pytest.raises(SystemExit):
        perturbation.main(["--contender", "digits:adamw-linear"])
    assert "TASK=FAMILY@LR" in capsys.readouterr().err


def test_a_seed_list_runs_those_seeds_only(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(perturbation.PROFILES, "digits", {"steps": 6, "options": {}})
    out = tmp_path / "p.json"
    perturbation.main(["--tasks", "digits", "--seed-list", "2", "--perturbations", "1", "--gen-only", "--json",
                       str(out), "--markdown", str(tmp_path / "p.md"),
                       "--threads", str(torch.get_num_threads())])  # fmt: skip
    records = json.loads(out.read_text())["records"]
    assert sorted((r["seed"], r["perturbation"]) for r in records) == [(2, 0), (2, 1)]
    for bad in (["3", "3"], ["-1"]):
        with pytest.raises(SystemExit):
            perturbation.main(["--tasks", "digits", "--seed-list", *bad])
        assert "--seed-list takes distinct seeds >= 0" in capsys.readouterr().err


def test_the_default_grid_point_is_the_suite_tables():
    # RESULTS_suite.md, written by suite_table.py, names each row's best grid point in its fifth column
    table = (perturbation.HERE / "RESULTS_suite.md").read_text().splitlines()
    named = {}
    for line in table:
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if len(cells) > 4 and "@" in cells[4]:
            named[cells[0]] = cells[4].split(" (")[0]
    rows = {"minilm-long": "minilm, 3,000 steps"}
    assert len(named) == 18
    for task in perturbation.PROFILES:
        assert perturbation.best_grid_point(task) == named[rows.get(task, task)], task


def test_a_task_without_a_grid_says_what_to_pass(monkeypatch, capsys):
    monkeypatch.setitem(perturbation.PROFILES, "digits", {"steps": 7, "options": {}})
    with pytest.raises(SystemExit):
        perturbation.main(["--tasks", "digits"])
    assert "pass --contender digits=FAMILY@LR, or --gen-only" in capsys.readouterr().err


def test_grid_only_runs_the_grid_point_alone(tmp_path, monkeypatch):
    monkeypatch.setitem(perturbation.PROFILES, "digits", {"steps": 6, "options": {}})
    out = tmp_path / "p.json"
    perturbation.main(["--tasks", "digits", "--seed-list", "1", "--perturbations", "1", "--grid-only",
                       "--contender", "digits=adamw-linear@0.01", "--json", str(out), "--markdown",
                       str(tmp_path / "p.md"), "--threads", str(torch.get_num_threads())])  # fmt: skip
    records = json.loads(out.read_text())["records"]
    assert {(r["contender"], r["seed"], r["perturbation"]) for r in records} == {
        ("adamw-linear@0.01", 1, 0), ("adamw-linear@0.01", 1, 1)
    }  # fmt: skip
    with pytest.raises(SystemExit):
        perturbation.main(["--tasks", "digits", "--gen-only", "--grid-only"])
