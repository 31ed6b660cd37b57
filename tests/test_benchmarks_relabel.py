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
