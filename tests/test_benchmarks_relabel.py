"""benchmarks/relabel.py: families renamed all at once (two can swap names), dropped ones removed, and the command
recorded in each changed file."""

import json

import pytest
import relabel


def results(tmp_path, name, families):
    runs = [{"family": f, "contender": f"{f}@5e-05", "seed": s, "eval_loss": 1.0 + i + s / 10}
            for i, f in enumerate(families) for s in (0, 1)]  # fmt: skip
    path = tmp_path / name
    path.write_text(json.dumps({"tasks": {"t": {"config": {}, "runs": runs}}, "meta": {"command": "python q.py"}}))
    return path


def test_swap_and_drop(tmp_path):
    changed = results(tmp_path, "a.json", ["gen-adamw", "gen-adamw-nodecay", "gen-sgd", "adamw-linear"])
    untouched = results(tmp_path, "b.json", ["adamw-linear"])
    before = untouched.read_text()
    argv = ["gen-adamw=gen-adamw-cosine", "gen-adamw-nodecay=gen-adamw", "--drop", "gen-sgd",
            "--files", str(changed), str(untouched)]  # fmt: skip
    relabel.main(argv)
    data = json.loads(changed.read_text())
    runs = data["tasks"]["t"]["runs"]
    # the old default's runs (eval loss 1.x) carry the new name, the renamed variant's (2.x) the default's name
    got = {(r["family"], r["contender"], r["seed"]): r["eval_loss"] for r in runs}
    assert got == {
        ("gen-adamw-cosine", "gen-adamw-cosine@5e-05", 0): 1.0, ("gen-adamw-cosine", "gen-adamw-cosine@5e-05", 1): 1.1,
        ("gen-adamw", "gen-adamw@5e-05", 0): 2.0, ("gen-adamw", "gen-adamw@5e-05", 1): 2.1,
        ("adamw-linear", "adamw-linear@5e-05", 0): 4.0, ("adamw-linear", "adamw-linear@5e-05", 1): 4.1,
    }  # fmt: skip
    assert data["meta"]["commands"] == ["python q.py", "python benchmarks/relabel.py " + " ".join(argv)]
    assert untouched.read_text() == before  # nothing to change: not rewritten


def test_bad_rename_says_what_to_pass(tmp_path, capsys):
    with pytest.raises(SystemExit):
        relabel.main(["gen-adamw", "--files", str(results(tmp_path, "a.json", ["gen-adamw"]))])
    assert "pass OLD=NEW" in capsys.readouterr().err


def test_a_drop_narrowed_to_a_task_and_seeds_or_to_one_contender(tmp_path):
    path = tmp_path / "a.json"
    runs = [{"family": f, "contender": f"{f}@{lr}", "seed": s, "eval_loss": 1.0}
            for f in ("gen-adamw", "adamw-linear") for lr in ("5e-05", "0.01") for s in (0, 1, 2)]  # fmt: skip
    tasks = {"t": {"config": {}, "runs": runs}, "u": {"config": {}, "runs": list(runs)}}
    path.write_text(json.dumps({"tasks": tasks, "meta": {"commands": ["python q.py"]}}))
    relabel.main(["--drop", "gen-adamw:t:0,2", "adamw-linear@0.01:u", "--files", str(path)])
    data = json.loads(path.read_text())
    left = {t: {(r["contender"], r["seed"]) for r in b["runs"]} for t, b in data["tasks"].items()}
    everything = {(r["contender"], r["seed"]) for r in runs}
    assert left["t"] == everything - {(f"gen-adamw@{lr}", s) for lr in ("5e-05", "0.01") for s in (0, 2)}
    assert left["u"] == everything - {("adamw-linear@0.01", s) for s in (0, 1, 2)}
    assert data["meta"]["commands"][-1].endswith("--drop gen-adamw:t:0,2 adamw-linear@0.01:u --files " + str(path))


def test_a_bad_drop_says_what_to_pass(tmp_path, capsys):
    with pytest.raises(SystemExit):
        relabel.main(["--drop", "gen-adamw:t:one", "--files", str(results(tmp_path, "a.json", ["gen-adamw"]))])
    assert "seeds are whole numbers" in capsys.readouterr().err


def test_perturbation_files_are_renamed_too(tmp_path):
    """perturbation.py's layout: its records, summary and per-task comparison name the contenders; the renames swap
    them there as well (a drop does not apply: nothing is removed), and the command is recorded."""
    path = tmp_path / "p.json"
    named = (("gen-adamw@5e-05", 1.0), ("gen-adamw-tail@5e-05", 2.0), ("adamw-linear@0.03", 3.0))
    records = [{"task": "t", "contender": c, "seed": 0, "perturbation": 0, "eval_loss": e} for c, e in named]
    summary = [{"task": "t", "contender": r["contender"], "mean_unperturbed": r["eval_loss"]} for r in records]
    against = [{"task": "t", "gen": "gen-adamw-tail@5e-05", "best": "adamw-linear@0.03", "low": -0.5}]
    meta = {"commands": ["python p.py"], "against_best": against}
    path.write_text(json.dumps({"meta": meta, "records": records, "summary": summary}))
    argv = ["gen-adamw=gen-adamw-last", "gen-adamw-tail=gen-adamw", "--files", str(path)]
    relabel.main(argv)
    data = json.loads(path.read_text())
    assert {r["contender"]: r["eval_loss"] for r in data["records"]} == {
        "gen-adamw-last@5e-05": 1.0, "gen-adamw@5e-05": 2.0, "adamw-linear@0.03": 3.0}  # fmt: skip
    assert {r["contender"]: r["mean_unperturbed"] for r in data["summary"]} == {
        "gen-adamw-last@5e-05": 1.0, "gen-adamw@5e-05": 2.0, "adamw-linear@0.03": 3.0}  # fmt: skip
    assert data["meta"]["against_best"][0]["gen"] == "gen-adamw@5e-05"
    assert data["meta"]["against_best"][0]["best"] == "adamw-linear@0.03"
    assert data["meta"]["commands"][-1] == "python benchmarks/relabel.py " + " ".join(argv)


def block(config, runs):
    return {"config": config, "runs": runs}


def run(family, seed, loss, role="main"):
    return {"family": family, "contender": f"{family}@5e-05", "role": role, "seed": seed, "eval_loss": loss}


def test_copy_adds_the_familys_missing_runs_to_the_files_with_the_same_task(tmp_path):
    config = {"steps": 40, "seeds": 3, "grid": [1e-4]}
    source = tmp_path / "option.json"
    source.write_text(json.dumps({"tasks": {
        "t": block({**config, "seeds": 5}, [run("gen-adamw", 0, 0.5), run("gen-adamw", 1, 0.6), run("other", 0, 9.0)]),
        "u": block(config, [run("gen-adamw", 0, 0.7)]),
    }, "meta": {}}))  # fmt: skip
    target = tmp_path / "task.json"
    target.write_text(json.dumps({"tasks": {"t": block(config, [run("gen-adamw", 1, 0.61), run("adamw", 0, 1.0)])},
                                  "meta": {"command": "python q.py"}}))  # fmt: skip
    argv = ["--copy", "gen-adamw", "--copy-from", str(source), "--files", str(target)]
    relabel.main(argv)
    data = json.loads(target.read_text())
    got = sorted((r["family"], r["seed"], r["eval_loss"]) for r in data["tasks"]["t"]["runs"])
    # seed 0 copied; seed 1 already there (kept as it was); the other family and the task the file lacks left out
    assert got == [("adamw", 0, 1.0), ("gen-adamw", 0, 0.5), ("gen-adamw", 1, 0.61)]
    assert set(data["tasks"]) == {"t"}
    assert data["meta"]["commands"] == ["python q.py", "python benchmarks/relabel.py " + " ".join(argv)]


def test_copy_refuses_a_task_configured_differently_and_writes_nothing(tmp_path, capsys):
    source = tmp_path / "option.json"
    source.write_text(json.dumps({"tasks": {"t": block({"steps": 3000}, [run("gen-adamw", 0, 0.5)])}, "meta": {}}))
    same = tmp_path / "a.json"
    same.write_text(json.dumps({"tasks": {"t": block({"steps": 3000}, [])}, "meta": {}}))
    other = tmp_path / "b.json"
    other.write_text(json.dumps({"tasks": {"t": block({"steps": 200}, [])}, "meta": {}}))
    before = same.read_text()
    with pytest.raises(SystemExit):
        relabel.main(["--copy", "gen-adamw", "--copy-from", str(source), "--files", str(same), str(other)])
    assert "task 't' is configured differently" in capsys.readouterr().err
    assert same.read_text() == before  # the file that matched is not written either


def test_copy_needs_its_source_and_the_files(tmp_path, capsys):
    with pytest.raises(SystemExit):
        relabel.main(["--copy", "gen-adamw", "--files", str(tmp_path / "a.json")])
    assert "pass --copy FAMILY and --copy-from FILE together" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        relabel.main(["--copy", "gen-adamw", "--copy-from", str(tmp_path / "a.json")])
    assert "--copy takes the files to copy into as --files" in capsys.readouterr().err
