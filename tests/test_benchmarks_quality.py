"""Smoke test of ``benchmarks/quality.py --quick``: the harness runs end to end and its output means what it says.

The lr traces are checked against closed forms (the stock schedules), against the run's own ``gen_trace.jsonl``
(GeN), and against the rules of each peer (gen-optim changes the lr only on its lazy steps; Prodigy starts at
``d0 * lr``; Schedule-Free keeps its lr without warmup; Mechanic starts at the scale its tuner sets from a zero
first product; DoG's eta grows from its tiny first step and its evaluation is of the averaged weights).
"""

from __future__ import annotations

import copy
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("gpt2", "digits")
FAMILIES = (
    "adamw-linear", "adamw-cosine", "adamw-constant", "prodigy", "dadapt-adam", "schedulefree-adamw", "mechanic",
    "dog", "gen-optim", "gen-adamw", "gen-sgd",
)  # fmt: skip
MECHANIC_BETAS = (0.9, 0.99, 0.999, 0.9999, 0.99999, 0.999999)  # mechanize's defaults


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("quality")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [
        sys.executable, str(ROOT / "benchmarks" / "quality.py"), "--quick", "--tasks", *TASKS, "--threads", "1",
        "--json", str(out / "quality.json"), "--markdown", str(out / "RESULTS_quality.md"), "--plots", str(out),
        "--workdir", str(out / "runs"), "--keep-runs",
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(out / "quality.json") as handle:
        return out, json.load(handle)


def runs(data, task, family, role="main"):
    return [r for r in data["tasks"][task]["runs"] if r["family"] == family and r["role"] == role]


@pytest.mark.slow
def test_every_contender_has_metrics_and_a_full_trace(quick):
    _, data = quick
    for task in TASKS:
        block = data["tasks"][task]
        steps = block["config"]["steps"]
        for family in FAMILIES:
            (run,) = runs(data, task, family)
            assert run["steps"] == steps
            assert math.isfinite(run["eval_loss"]) and run["eval_loss"] > 0
            assert math.isfinite(run["metric"])
            assert run["wall_s"] > 0
            assert len(run["lr_trace"]) == steps and all(lr > 0 for lr in run["lr_trace"])
        robust = {(r["family"], r["lr"]) for r in block["runs"] if r["role"] == "robustness"}
        sweep = data["meta"]["sweep"]
        assert robust == {(f, lr) for f in ("gen-adamw", "adamw-cosine") for lr in sweep}


@pytest.mark.slow
def test_stock_schedules_follow_their_closed_forms(quick):
    _, data = quick
    for task in TASKS:
        steps = data["tasks"][task]["config"]["steps"]
        shapes = {
            "adamw-cosine": lambda t, n=steps: 0.5 * (1.0 + math.cos(math.pi * t / n)),
            "adamw-linear": lambda t, n=steps: 1.0 - t / n,
            "adamw-constant": lambda t, n=steps: 1.0,
        }
        for family, shape in shapes.items():
            for run in runs(data, task, family) + runs(data, task, family, "robustness"):
                expected = [run["lr"] * shape(t) for t in range(steps)]
                assert run["lr_trace"] == pytest.approx(expected, rel=1e-9, abs=1e-15)


@pytest.mark.slow
def test_gen_lr_trace_matches_gen_trace_jsonl(quick):
    out, data = quick
    for task in TASKS:
        for family in ("gen-adamw", "gen-sgd"):
            for run in runs(data, task, family) + runs(data, task, family, "robustness"):
                path = out / "runs" / task / f"{run['contender']}-s{run['seed']}" / "gen_trace.jsonl"
                records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
                assert records == run["gen_trace"]
                assert run["gen_updates"] == len(records)
                assert run["gen_update_steps"] == [r["step"] for r in records]
                # Out of sample: the first line runs through the means of steps 1-4 and 5-8 (windows of
                # gen_interval=4 steps during the fast start) and is measured on the 9th batch, unless the first
                # step's own batch found that the starting lr overshot (then step 1 restarts the lr).
                first = records[0]
                assert first["probe_lr"] == pytest.approx(run["lr"])
                assert first["step"] == 9 or (first["step"] == 1 and first["fallback"] == "overshot")
                # The lr used at step s is the level set by the last GeN update at or before s, as it is: the
                # default window lines have no decay shape.
                updates = {r["step"]: r["lr"] for r in records}
                level = run["lr"]
                for step, lr in enumerate(run["lr_trace"], start=1):
                    level = updates.get(step, level)
                    assert lr == pytest.approx(level, rel=1e-12)


@pytest.mark.slow
def test_peers_traces_follow_their_rules(quick):
    _, data = quick
    for task in TASKS:
        steps = data["tasks"][task]["config"]["steps"]
        (gen_optim,) = runs(data, task, "gen-optim")
        assert gen_optim["gen_optim_calls"] == steps // 4
        trace = gen_optim["lr_trace"]
        assert trace[0] == pytest.approx(1e-4)
        changed = [t for t in range(1, steps) if trace[t] != trace[t - 1]]
        assert all((t + 1) % 4 == 0 for t in changed)  # only on the lazy steps, where lr_parabola runs
        (prodigy,) = runs(data, task, "prodigy")
        assert prodigy["lr_trace"][0] == pytest.approx(1e-6)  # d0 * lr with the defaults d0=1e-6, lr=1
        (dadapt,) = runs(data, task, "dadapt-adam")
        assert dadapt["lr_trace"][0] == pytest.approx(1e-6)
        (schedulefree,) = runs(data, task, "schedulefree-adamw")
        assert schedulefree["lr_trace"] == pytest.approx([2.5e-3] * steps)
        # Mechanic's first step: the base displacement before it is zero, so each s_i becomes
        # beta_i * 1e-6 (its initial max product) * s_init / 6 / eps = beta_i * 1e-6 / 6; base lr 1.
        (mechanic,) = runs(data, task, "mechanic")
        assert mechanic["lr"] is None
        assert mechanic["lr_trace"][0] == pytest.approx(1e-6 * sum(MECHANIC_BETAS) / len(MECHANIC_BETAS), rel=1e-5)
        (dog,) = runs(data, task, "dog")
        assert dog["lr"] is None
        assert dog["lr_trace"][0] < 1e-3 and dog["lr_trace"][-1] > dog["lr_trace"][0]  # eta grows from r_eps
        assert dog["evaluated_on"].startswith("iterate average")
        assert math.isfinite(dog["eval_loss_last_iterate"]) and math.isfinite(dog["metric_last_iterate"])
        assert dog["eval_loss_last_iterate"] != dog["eval_loss"]  # the averaged weights are what was evaluated


@pytest.mark.slow
def test_report_and_plots(quick):
    out, data = quick
    text = (out / "RESULTS_quality.md").read_text()
    assert "## Against the quality targets" in text
    for task in TASKS:
        assert f"### {task}" in text
        assert (out / f"quality_quick_lr_{task}.png").stat().st_size > 0
        for family in FAMILIES:
            assert family in text
    assert (out / "quality_quick_robustness.png").stat().st_size > 0
    assert "dog is evaluated on its iterate average" in text
    (entry,) = data["meta"]["versions_by_command"]
    assert entry == {"command": 0, "versions": data["meta"]["versions"]}
    assert {"mechanic-pytorch", "dog-optimizer"} <= set(entry["versions"])


def test_versions_of_a_resumed_run_name_their_commands():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _report import _versions

    meta = {
        "commands": ["first", "second", "third"],
        "versions": {"torch": "2", "hf-gen": "0.1 (git b)"},
        "versions_by_command": [
            {"command": 0, "versions": {"torch": "2", "hf-gen": "0.1 (git a)"}},
            {"command": 2, "versions": {"torch": "2", "hf-gen": "0.1 (git b)", "dog-optimizer": "1.0.3"}},
        ],
    }
    assert _versions(meta) == "torch 2, hf-gen 0.1 (git a) (command 1) / 0.1 (git b) (command 3), dog-optimizer 1.0.3"
    assert _versions({"command": "x", "versions": {"torch": "2"}}) == "torch 2"


def test_verdicts_say_when_no_peer_ran_in_the_file():
    """A task whose peers ran into another file (the suite's rows read several) is not reported as losing to them."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _report import _verdicts, analyse

    def run(family, lr, loss, contender=None):
        contender = contender or (f"{family}@{lr:g}" if lr else family)
        return {"family": family, "lr": lr, "contender": contender, "role": "main", "seed": 0, "eval_loss": loss,
                "metric": 0.5, "wall_s": 1.0}  # fmt: skip

    grid_and_gen = [run("adamw-linear", 3e-4, 1.0), run("gen-adamw", 5e-5, 1.1, "gen-adamw@5e-05")]
    alone = {"tasks": {"t": {"runs": grid_and_gen}}}
    text = "\n".join(_verdicts(analyse(alone)))
    assert "- **t**: no lr-free peer ran in this file; vs the best tuned grid point +10.00% eval loss." in text
    assert "(ahead of all peers on 0 of 1: t: no peer ran in this file)" in text
    # with a peer in the file: ahead of it (1.1 against 1.2), then behind one (1.1 against 1.05)
    beside = {"tasks": {"t": {"runs": [*grid_and_gen, run("prodigy", None, 1.2), run("mechanic", None, 1.05)]}}}
    text = "\n".join(_verdicts(analyse(beside)))
    assert "- **t**: GeN-AdamW wins against prodigy; loses to mechanic; vs the best tuned grid point +10.00%" in text
    assert "(ahead of all peers on 0 of 1: t: no)" in text
    # the peers alone (GeN ran into another file): neither target reads a GeN number
    peers = {"tasks": {"t": {"runs": [run("adamw-linear", 3e-4, 1.0), run("prodigy", None, 1.2)]}}}
    text = "\n".join(_verdicts(analyse(peers)))
    assert "**not met** (t: GeN did not run in this file)." in text
    assert "(ahead of all peers on 0 of 1: t: GeN did not run in this file)." in text
    # no starting-lr sweep ran: nothing to compare (it used to read "spread diverged vs diverged")
    assert (
        "3. A flatter robustness curve than AdamW + cosine: not measured (no starting-lr sweep in this file)." in text
    )


def test_the_robustness_target_reads_each_sweep_and_names_the_tasks_without_one():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _report import _verdicts, analyse

    def run(family, lr, loss, role="main"):
        return {"family": family, "lr": lr, "contender": f"{family}@{lr:g}", "role": role, "seed": 0,
                "eval_loss": loss, "metric": 0.5, "wall_s": 1.0}  # fmt: skip

    base = [run("adamw-linear", 3e-4, 1.0), run("gen-adamw", 5e-5, 1.1)]
    # GeN's sweep spans 1.3 - 1.1 = 0.2, cosine's 2.0 - 1.0 = 1.0: flatter on "a"; "b" has no sweep
    sweep = [run("gen-adamw", 1e-5, 1.3, "robustness"), run("gen-adamw", 1e-3, 1.1, "robustness"),
             run("adamw-cosine", 1e-5, 2.0, "robustness"), run("adamw-cosine", 1e-3, 1.0, "robustness")]  # fmt: skip
    text = "\n".join(_verdicts(analyse({"tasks": {"a": {"runs": [*base, *sweep]}}})))
    assert "3. A flatter robustness curve than AdamW + cosine: **met** (a: spread 0.2000 vs 1.0000)." in text
    text = "\n".join(_verdicts(analyse({"tasks": {"a": {"runs": [*base, *sweep]}, "b": {"runs": base}}})))
    assert ("3. A flatter robustness curve than AdamW + cosine: **not met** (a: spread 0.2000 vs 1.0000, b: no "
            "starting-lr sweep in this file).") in text  # fmt: skip


def test_gen_families_set_their_arguments(tmp_path):
    """Each GeN family trains through GeNTrainer with hf-gen's defaults plus exactly its own gen_* arguments."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _contenders import ADAPTIVE_CAPS, FAMILIES, GEN_VARIANTS, Contender, _make_trainer
    from _tasks import build_task

    from hf_gen import GeNTrainingArguments

    task = build_task("digits", 4)
    assert set(GEN_VARIANTS) <= set(FAMILIES)
    assert {f"gen-adamw-adaptive{cap}" for cap in ADAPTIVE_CAPS} <= set(GEN_VARIANTS)
    for family, variant in GEN_VARIANTS.items():
        trainer, _ = _make_trainer(Contender(family, 5e-5), task, 0, str(tmp_path / family), task.model(0))
        assert isinstance(trainer.args, GeNTrainingArguments) and trainer.args.lr_scheduler_type == "gen"
        # hf-gen's defaults as they resolve with the family's own arguments (the decay shape follows the probe)
        expected = GeNTrainingArguments(output_dir=str(tmp_path), lr_scheduler_type="gen", **variant)
        names = ("gen_interval", "gen_max_interval", "gen_decay", "gen_probe_batch", "gen_fast_start_lines")
        for name in (*names, "gen_smooth_by_count", "gen_pace_unit", "gen_kalman_gain"):
            assert getattr(trainer.args, name) == getattr(expected, name), (family, name)
    assert GEN_VARIANTS["gen-adamw-adaptive16"] == {
        "gen_interval": 4,
        "gen_max_interval": 16,
        "gen_probe_batch": "next",
        "gen_smooth_by_count": False,
        "gen_kalman_gain": False,
    }
    # the families measured before the count keep plain smoothing; the default, its old option name and the options
    # measured on it count
    counting = (
        "gen-adamw",
        "gen-adamw-count",
        "gen-sgd",
        "gen-adamw-kalman",
        "gen-adamw-no-kalman",
        "gen-sgd-no-kalman",
        "gen-adamw-warmup",
        "gen-adamw-warmup20",
    )
    for family in set(GEN_VARIANTS) - set(counting):
        assert GEN_VARIANTS[family]["gen_smooth_by_count"] is False, family
    # and the families measured before the Kalman gain weigh each line with the same memory in steps
    kalman = ("gen-adamw", "gen-sgd", "gen-adamw-kalman", "gen-adamw-warmup", "gen-adamw-warmup20")
    for family in set(GEN_VARIANTS) - set(kalman):
        assert GEN_VARIANTS[family]["gen_kalman_gain"] is False, family
    for family in counting:
        trainer, _ = _make_trainer(Contender(family, 5e-5), task, 0, str(tmp_path / f"{family}-c"), task.model(0))
        assert trainer.args.gen_smooth_by_count is True, family
        assert trainer.args.gen_kalman_gain is (family in kalman), family
    # the previous default's runs, and the variants run under it, keep the cosine shape they ran with
    for family in ("gen-adamw-cosine", "gen-adamw-averages-next", "gen-adamw-windows", "gen-adamw-same"):
        trainer, _ = _make_trainer(Contender(family, 5e-5), task, 0, str(tmp_path / family), task.model(0))
        assert trainer.args.gen_decay == "cosine", family
    trainer, _ = _make_trainer(Contender("gen-adamw", 5e-5), task, 0, str(tmp_path / "default"), task.model(0))
    assert trainer.args.gen_decay == "none" and trainer.args.gen_probe_batch == "averages"
    assert trainer.args.gen_kalman_gain
    assert trainer.args.warmup_steps == 0
    # the warmup family: the defaults with the grid's own warmup (5% of the steps, at least one)
    long_task = build_task("digits", 300)
    trainer, _ = _make_trainer(Contender("gen-adamw-warmup", 5e-5), long_task, 0, str(tmp_path / "w"), task.model(0))
    assert trainer.args.warmup_steps == 15 and trainer.args.get_warmup_steps(300) == 15
    trainer, _ = _make_trainer(Contender("gen-adamw-warmup", 5e-5), task, 0, str(tmp_path / "w4"), task.model(0))
    assert trainer.args.warmup_steps == 1
    trainer, _ = _make_trainer(
        Contender("gen-adamw-warmup20", 5e-5), long_task, 0, str(tmp_path / "w2"), task.model(0)
    )
    assert trainer.args.warmup_steps == 60


def test_a_gen_variant_asked_for_by_name_joins_the_comparison():
    """`--families gen-adamw-adaptive16` runs that variant from the Trainer's default lr (it is not in the fixed
    list of the main comparison); a listed family is not added twice."""
    from quality import contenders

    from hf_gen.args import GeNTrainingArguments

    default_lr = GeNTrainingArguments(output_dir="unused").learning_rate
    names = [c.name for c in contenders([1e-4, 3e-4, 1e-3], False, ["gen-adamw-adaptive16", "adamw-linear"])]
    assert names.count(f"gen-adamw-adaptive16@{default_lr:g}") == 1
    assert sum(name.startswith("adamw-linear@") for name in names) == 3


def test_the_sweep_runs_the_families_asked_for():
    """`--sweep-families` sweeps those families over the starting lrs (by default GeN's default and AdamW + cosine)."""
    from quality import parse, robustness

    assert parse([]).sweep_families == ["gen-adamw", "adamw-cosine"]
    swept = parse(["--sweep-families", "gen-adamw-cosine"]).sweep_families
    assert [c.name for c in robustness([1e-4, 1e-2], swept)] == ["gen-adamw-cosine@0.0001", "gen-adamw-cosine@0.01"]


@pytest.mark.slow
def test_suite_table_reads_the_quick_run(quick):
    # One row per --source: the numbers recomputed here from the raw runs, independently of the table's code.
    out, data = quick
    sources = [f"{task}={out / 'quality.json'}:{task}" for task in TASKS]
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "suite_table.py"), "--only", "--source", *sources,
                           "--markdown", str(out / "suite.md")], capture_output=True, text=True, timeout=120,
                          cwd=ROOT / "benchmarks")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    table = (out / "suite.md").read_text()
    others, runner_up = {}, [0, 0]
    for task in TASKS:
        loss = {r["contender"]: r["eval_loss"] for r in data["tasks"][task]["runs"] if r["role"] == "main"}
        families = ("adamw-linear", "adamw-cosine", "adamw-cosine-warmup", "adamw-constant")
        grid = {n: v for n, v in loss.items() if n.split("@")[0] in families}
        best = min(grid, key=grid.get)
        gen = loss["gen-adamw@5e-05"]
        peers = [n for n in loss if n.split("@")[0] in ("prodigy", "dadapt-adam", "schedulefree-adamw", "mechanic",
                                                          "dog", "gen-optim")]  # fmt: skip
        ahead = sum(gen < loss[n] for n in peers)
        (row,) = [line for line in table.splitlines() if line.startswith(f"| {task} |")]
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[4].startswith(f"{best} (1): {grid[best]:.4f}")
        assert cells[7].startswith(f"{100 * (gen - grid[best]) / grid[best]:+.1f}%")
        assert cells[11] == f"{ahead} of {len(peers)}"
        metric = {r["contender"]: r["metric"] for r in data["tasks"][task]["runs"] if r["role"] == "main"}
        kept = (
            data["tasks"][task]["config"]["metric"] != "accuracy" or metric["gen-adamw@5e-05"] >= metric[best] - 0.01
        )
        verdict = "**ahead**" if gen < grid[best] else "within" if gen <= 1.01 * grid[best] else "loses"
        assert cells[12] == (verdict if kept else "loses")
        # the grid's second-best point against its best
        second = sorted(grid, key=grid.get)[1]
        runner_pct = 100 * (grid[second] - grid[best]) / grid[best]
        assert cells[13].startswith(f"{second} (1): {runner_pct:+.1f}%")
        close = runner_pct <= 1.0 and (
            data["tasks"][task]["config"]["metric"] != "accuracy" or metric[second] >= metric[best] - 0.01
        )
        runner_up[0] += close
        runner_up[1] += gen <= grid[second]
        # the same verdict for each peer and the Trainer's defaults, counted over the rows in the summary
        accuracy = data["tasks"][task]["config"]["metric"] == "accuracy"
        for name in [*peers, *(["trainer-default"] if "trainer-default" in loss else [])]:
            value = loss[name]
            fine = value is not None and math.isfinite(value) and value <= 1.01 * grid[best]
            fine = fine and (not accuracy or metric[name] >= metric[best] - 0.01)
            ahead_of_best = fine and value < grid[best]
            tally = others.setdefault(name.split("@")[0], [0, 0, 0])
            tally[0] += fine
            tally[1] += ahead_of_best
            tally[2] += 1
    for family, (fine, ahead_of_best, rows) in others.items():
        assert f"{family} {fine} of {rows} (ahead on {ahead_of_best})" in table
    assert (
        f"is within 1% (and 1 accuracy point) of the best on {runner_up[0]} of {len(TASKS)} rows; GeN's default has an"
        f" eval loss at or below the runner-up's on {runner_up[1]}." in table
    )


@pytest.mark.slow
def test_suite_table_counts_each_peer_as_it_counts_gen(quick, tmp_path):
    # The summary's count for each lr-free peer and the Trainer's defaults applies GeN's verdict to them: on a copy of
    # one accuracy task with the peers' results set by hand around the best grid point, ahead (-1%), within (+0.5%),
    # +0.5% with 2 accuracy points lost, diverged and +50% count as 1, 1, 0, 0 and 0, and the Trainer's defaults at
    # -0.5% with half a point gained as 1; a second row where every one of them is ahead (-10%, no accuracy lost) adds
    # one to each.
    out, data = quick
    block = copy.deepcopy(data["tasks"]["digits"])
    assert block["config"]["metric"] == "accuracy"
    main = [r for r in block["runs"] if r["role"] == "main"]
    grid = [
        r for r in main if r["family"] in ("adamw-linear", "adamw-cosine", "adamw-cosine-warmup", "adamw-constant")
    ]
    best = min(grid, key=lambda r: r["eval_loss"])
    template = next(r for r in main if r["family"] == "prodigy")
    given = {  # family: (eval loss as a multiple of the best point's, accuracy points against it)
        "prodigy": (0.99, 0.0), "dadapt-adam": (1.005, 0.0), "schedulefree-adamw": (1.005, -2.0),
        "mechanic": (None, 0.0), "dog": (1.5, 0.0), "trainer-default": (0.995, 0.5),
    }  # fmt: skip
    rows = {}
    for label, scale in (("set", None), ("all-ahead", 0.9)):
        runs = [r for r in block["runs"] if r["family"] not in given]
        for family, (factor, points) in given.items():
            factor, points = (scale, 0.0) if scale else (factor, points)
            loss = None if factor is None else factor * best["eval_loss"]
            runs.append(dict(template, family=family, contender=family, eval_loss=loss,
                             metric=best["metric"] + points / 100.0))  # fmt: skip
        path = tmp_path / f"{label}.json"
        path.write_text(json.dumps({"tasks": {"digits": {"config": block["config"], "runs": runs}}}))
        rows[label] = path
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "suite_table.py"), "--only", "--source",
                           *(f"{label}={path}:digits" for label, path in rows.items()),
                           "--markdown", str(tmp_path / "suite.md")], capture_output=True, text=True, timeout=120,
                          cwd=ROOT / "benchmarks")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    table = (tmp_path / "suite.md").read_text()
    expected = {"prodigy": (2, 2), "dadapt-adam": (2, 1), "schedulefree-adamw": (1, 1), "mechanic": (1, 1),
                "dog": (1, 1), "trainer-default": (2, 2)}  # fmt: skip
    for family, (fine, ahead) in expected.items():
        assert f"{family} {fine} of 2 (ahead on {ahead})" in table


@pytest.mark.slow
def test_suite_table_reads_the_best_points_neighbours_and_runner_up(quick, tmp_path):
    # A grid set by hand: linear at 1e-3, 3e-3 (the best) and 1e-2 at 1.2, 1 and 1.5 times one loss, and cosine at
    # 3e-3 at 1.1 times it. The runner-up is cosine at 3e-3 (+10%); the best point's neighbours are its own schedule
    # at a third of its lr (+20%) and at 3.3 times it (+50%), not the other schedule's point.
    out, data = quick
    block = copy.deepcopy(data["tasks"]["digits"])
    main = [r for r in block["runs"] if r["role"] == "main"]
    template = next(r for r in main if r["family"] == "adamw-linear")
    loss = template["eval_loss"]
    grid = [("adamw-linear", 1e-3, 1.2), ("adamw-linear", 3e-3, 1.0), ("adamw-linear", 1e-2, 1.5),
            ("adamw-cosine", 3e-3, 1.1)]  # fmt: skip
    runs = [dict(template, family=family, lr=lr, contender=f"{family}@{lr:g}", eval_loss=factor * loss)
            for family, lr, factor in grid]  # fmt: skip
    runs += [r for r in main if r["contender"] == "gen-adamw@5e-05"]
    (tmp_path / "grid.json").write_text(json.dumps({"tasks": {"digits": {"config": block["config"], "runs": runs}}}))
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "suite_table.py"), "--only", "--source",
                           f"row={tmp_path / 'grid.json'}:digits", "--markdown", str(tmp_path / "suite.md")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT / "benchmarks")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    table = (tmp_path / "suite.md").read_text()
    (row,) = [line for line in table.splitlines() if line.startswith("| row |")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[4].startswith("adamw-linear@0.003 (1)")
    assert cells[13] == "adamw-cosine@0.003 (1): +10.0%, +0.0 pt"
    assert (
        "neighbouring lrs (eval loss against the best point; seeds): row 0.33x +20.0% (1), 3.3x +50.0% (1)." in table
    )


@pytest.mark.slow
def test_suite_table_puts_another_gen_contender_in_the_defaults_place(quick, tmp_path):
    # --gen/--also: an option's runs, read from extra files, take GeN's place in each row; a block of the same task at
    # another step count (another row's horizon) is not merged, and a run kept in two files is read once. The numbers
    # are recomputed here from the files.
    out, data = quick
    task = TASKS[0]
    block = copy.deepcopy(data["tasks"][task])
    option = [dict(r, family="gen-adamw-x", contender="gen-adamw-x@5e-05", eval_loss=1.5 * r["eval_loss"])
              for r in block["runs"] if r["contender"] == "gen-adamw@5e-05"]  # fmt: skip
    other = copy.deepcopy(option)
    for r in other:
        r["eval_loss"] *= 2.0
    same = {"tasks": {task: {"config": block["config"], "runs": option}}}
    longer = {"tasks": {task: {"config": dict(block["config"], steps=block["config"]["steps"] + 1), "runs": other}}}
    (tmp_path / "same.json").write_text(json.dumps(same))
    (tmp_path / "longer.json").write_text(json.dumps(longer))
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "suite_table.py"), "--source",
                           f"{task}={out / 'quality.json'}:{task}", "--gen", "gen-adamw-x@5e-05", "--also",
                           str(tmp_path / "same.json"), str(tmp_path / "longer.json"), str(tmp_path / "same.json"),
                           "--markdown",
                           str(tmp_path / "suite.md")], capture_output=True, text=True, timeout=120,
                          cwd=ROOT / "benchmarks")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    loss = {r["contender"]: r["eval_loss"] for r in block["runs"] if r["role"] == "main"}
    grid = {n: v for n, v in loss.items() if n.split("@")[0] in ("adamw-linear", "adamw-cosine", "adamw-constant")}
    best = min(grid, key=grid.get)
    gen = statistics.mean(r["eval_loss"] for r in option)
    (row,) = [line for line in (tmp_path / "suite.md").read_text().splitlines() if line.startswith(f"| {task} |")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[7].startswith(f"{100 * (gen - grid[best]) / grid[best]:+.1f}%")
    assert cells[8] == " / ".join(f"{r['eval_loss']:.3f}" for r in sorted(option, key=lambda r: r["seed"]))
    assert "GeN as gen-adamw-x@5e-05 is within" in (tmp_path / "suite.md").read_text()


@pytest.mark.slow
def test_suite_table_names_rows_whose_best_point_ran_on_fewer_seeds(quick, tmp_path):
    # The best grid point is the lowest mean whatever its seeds; the summary names every row where it ran on fewer
    # seeds than GeN. Here GeN's runs get two more seeds (copies under new seed numbers) in a second file.
    out, data = quick
    task = TASKS[0]
    block = copy.deepcopy(data["tasks"][task])
    extra = [dict(r, seed=r["seed"] + k) for k in (1, 2) for r in block["runs"] if r["contender"] == "gen-adamw@5e-05"]
    (tmp_path / "more.json").write_text(json.dumps({"tasks": {task: {"config": block["config"], "runs": extra}}}))
    sources = [
        f"{task}={out / 'quality.json'},{tmp_path / 'more.json'}:{task}",
        f"{TASKS[1]}={out / 'quality.json'}:{TASKS[1]}",
    ]
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "suite_table.py"), "--source", *sources,
                           "--markdown", str(tmp_path / "suite.md")], capture_output=True, text=True, timeout=120,
                          cwd=ROOT / "benchmarks")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    text = (tmp_path / "suite.md").read_text()
    (line,) = [
        x for x in text.splitlines() if x.startswith("- Rows whose best grid point ran on fewer seeds than GeN: ")
    ]
    named = line.split(": ", 1)[1].rstrip(".").split(", ")  # the --source rows replace the stored ones of that name
    assert f"{task} (1 against 3)" in named
    assert not any(n.startswith(f"{TASKS[1]} (") for n in named)  # one seed each: not named
    (row,) = [line for line in text.splitlines() if line.startswith(f"| {task} |")]
    assert "(1): " in row.split("|")[5]
