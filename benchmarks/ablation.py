"""Which GeN defaults? Each lever on and off on every benchmark task, plus the starting-lr robustness curve.

Usage:
    python benchmarks/ablation.py           # levers x tasks, then the sweeps (sized like quality.py's run)
    python benchmarks/ablation.py --tasks digits gpt2 --seeds digits=3 gpt2=2 --variants defaults search=off
    python benchmarks/ablation.py --holdout       # the fourth task (diabetes regression), defaults vs its grid

The tasks, their step counts, data order and initial weights are those of ``benchmarks/quality.py``'s full profile
(the best AdamW grid point of its JSON is the reference) or of its wider suite (pass the task's own results file as
``--quality``, e.g. ``--tasks cancer --quality benchmarks/results/suite_cancer.json``); every run is GeN-AdamW
through ``GeNTrainer`` from the Trainer's default starting lr (5e-5) unless swept. ``--holdout`` runs a task of a
different kind that was not used to choose the defaults: an MLP regressing scikit-learn's diabetes targets (MSE),
with its own AdamW linear/cosine grid. Results go to ``results/ablation.json`` (rewritten after every run;
``--resume`` skips runs already there) and the tables to ``RESULTS_ablation.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _contenders import (  # noqa: E402
    ADAPTIVE_CAPS,
    GEN_INTERVAL,
    GEN_VARIANTS,
    TRAINER_DEFAULT_LR,
    Contender,
    run_contender,
)
from _tasks import Task, build_task  # noqa: E402
from quality import FULL, SUITE  # noqa: E402

# Each lever changed from the defaults (lines through window means in units of the lr their steps ran at, each
# charged with the jitter, a fast start on 4-step window lines capped by the last step's line, no decay shape, the
# mean of the last 20% of the steps' weights at the end, a window that lost ground taken back, interval 4, gamma 0.9
# with the first settled lines weighed by count and each as the Kalman gain of one batch's measurement, max change
# 2), one at a time; "bf16" runs the defaults under bf16 autocast (where the loss's precision matters).
VARIANTS = {
    "defaults": {},
    "fast_start_lines=windows": {"gen_fast_start_lines": "windows"},
    "fast_start_lines=next": {"gen_fast_start_lines": "next"},
    "search=off": {"gen_search_probes": 0},
    "fast_start=off": {"gen_fast_start": False},
    "decay=cosine": {"gen_decay": "cosine"},
    "decay=linear": {"gen_decay": "linear"},
    "probe=next": {"gen_probe_batch": "next"},
    "probe=same": {"gen_probe_batch": "same"},
    "interval=1": {"gen_interval": 1},
    "interval=8": {"gen_interval": 8},
    "interval=16": {"gen_interval": 16},
    "gamma=0.5": {"gen_gamma": 0.5},
    "max_change=1.25": {"gen_max_change": 1.25},
    "fast_decrease": {"gen_fast_decrease": True},
    "bf16": {"bf16": True},
    "tail=off": {"gen_tail_average": 0.0},  # end on the last iterate (the default before the tail average)
    "undo=off": {"gen_undo_lost_windows": False},  # keep every window (the default before the undo)
    "jitter=off": {"gen_jitter_cost": False},  # only the fast start's lines charged (the default before)
    "charge=off": {"gen_jitter_cost": False, "gen_fast_start_jitter": False},  # no line charged (the one before)
    "lower=on": {"gen_lower_at_once": True},  # once settled, a lower level taken at once, only raises smoothed
    "pace=off": {"gen_pace_unit": False},  # each window line in units of the level at its close (the default before)
    "count=off": {"gen_smooth_by_count": False},  # plain smoothing from the first settled line (the default before)
    "kalman=off": {"gen_kalman_gain": False},  # each settled line weighed as exact (the default before)
    # the count on one-step lines, where its default is off (a level that follows greedy estimates sooner loses)
    "probe=next+count": {"gen_probe_batch": "next", "gen_smooth_by_count": True},
    "probe=same+count": {"gen_probe_batch": "same", "gen_smooth_by_count": True},
    # adaptive recompute (not a default): the gap doubles after each steady update up to the cap, as in quality.py
    # (whose families keep the plain smoothing they were measured with; here only the recompute's levers change)
    **{
        f"max_interval={cap}": {
            k: v for k, v in GEN_VARIANTS[f"gen-adamw-adaptive{cap}"].items() if k != "gen_smooth_by_count"
        }
        for cap in ADAPTIVE_CAPS
    },
    **{
        f"max_interval={cap}+count": {
            **{k: v for k, v in GEN_VARIANTS[f"gen-adamw-adaptive{cap}"].items() if k != "gen_smooth_by_count"},
            "gen_smooth_by_count": True,
        }
        for cap in ADAPTIVE_CAPS
    },
}
SWEEP = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1]
# quality.py's profile and its wider suite (a suite task's grid is in its own results file: pass it as --quality)
DEFAULT_STEPS = {name: entry["steps"] for name, entry in {**FULL, **SUITE}.items()}
DEFAULT_OPTIONS = {name: entry["options"] for name, entry in {**FULL, **SUITE}.items()}


def make_task(name: str, steps: int) -> Task:
    return build_task(name, steps, **DEFAULT_OPTIONS.get(name, {}))


# ---- one GeN run -------------------------------------------------------------------------------------------------


def run_gen(task: Task, seed: int, lr: float, variant: dict, workdir: str) -> dict:
    """One GeN-AdamW run with the ``gen_*`` arguments of ``variant``, through the benchmark's one runner."""
    return run_contender(Contender("gen-adamw", lr, tuple(sorted(variant.items()))), task, seed, workdir)


# ---- driver ------------------------------------------------------------------------------------------------------


def save(path: str, data: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(f"{path}.tmp", "w") as handle:
        json.dump(data, handle, indent=1)
    os.replace(f"{path}.tmp", path)


def best_grid(quality: dict, task: str, ablation: dict) -> tuple[str, float] | None:
    """The AdamW grid point (linear/cosine) with the lowest mean eval loss, from quality.json or the holdout grid."""
    runs = quality.get("tasks", {}).get(task, {}).get("runs", []) + ablation.get("grids", {}).get(task, [])
    by: dict[str, list[float]] = {}
    for r in runs:
        if r.get("role", "main") == "main" and r["contender"].startswith(("adamw-linear", "adamw-cosine")):
            by.setdefault(r["contender"], []).append(r["eval_loss"] if r["eval_loss"] is not None else math.inf)
    if not by:
        return None
    name = min(by, key=lambda k: statistics.mean(by[k]))
    return name, statistics.mean(by[name])


def _loss(value: float | None) -> str:
    return "diverged" if value is None else f"{value:.4f}"


def gap_stats(run: dict, base: int, cap: int) -> dict:
    """Where an adaptive run's gap went: the longest gap, the updates that left it at the cap, and each drop back to
    ``base`` from a longer gap, by cause (a fallback, or an estimate outside the change bound; ``None`` when the run
    kept no trace)."""
    intervals, steps, trace = run["gen_intervals"], run["gen_update_steps"], run.get("gen_trace")
    drops = [i for i in range(1, len(intervals)) if intervals[i - 1] > base and intervals[i] == base]
    return {
        "longest": max(intervals),
        "at_cap": sum(i == cap for i in intervals),
        "drops": len(drops),
        "drops_fallback": None if trace is None else sum(trace[i]["fallback"] is not None for i in drops),
        "cap_drop_steps": [steps[i] for i in drops if intervals[i - 1] == cap],
    }


def gap_table(variants: dict) -> list[str]:
    """Per seed of each adaptive variant: how far the gap grew and where it dropped back (markdown lines)."""
    lines = ["", "Adaptive gap: the longest gap; updates that left it at the cap; drops back to gen_interval from a "
             "longer gap (of which a fallback caused / an estimate outside the change bound); the steps of the drops "
             "from the cap.", "", "| variant | seed | longest gap | updates at cap | drops (fallback / outside bound) "
             "| drops from the cap at steps |", "|---|---|---|---|---|---|"]  # fmt: skip
    rows = 0
    for variant, runs in variants.items():
        cap = VARIANTS.get(variant, {}).get("gen_max_interval")
        if cap is None:
            continue
        base = VARIANTS[variant].get("gen_interval", GEN_INTERVAL)
        for run in sorted(runs, key=lambda r: r["seed"]):
            g = gap_stats(run, base, cap)
            causes = (
                "-" if g["drops_fallback"] is None else f"{g['drops_fallback']} / {g['drops'] - g['drops_fallback']}"
            )
            lines.append(f"| {variant} | {run['seed']} | {g['longest']} | {g['at_cap']} | {g['drops']} ({causes}) | "
                         f"{', '.join(map(str, g['cap_drop_steps'])) or '-'} |")  # fmt: skip
            rows += 1
    return lines if rows else []


def markdown(data: dict, quality: dict) -> str:
    lines = ["# GeN defaults: ablation", "", f"Commands: `{'`; `'.join(data['meta']['commands'])}`", "",
             "GeN-AdamW from the Trainer's default starting lr (5e-5); final eval loss, mean over seeds (std); in "
             "brackets the difference from the best AdamW linear/cosine grid point of the same task (negative: GeN "
             "ahead).", ""]  # fmt: skip
    for task, block in data["tasks"].items():
        ref = best_grid(quality, task, data)
        head = f"## {task}" + (f" (best grid point: {ref[0]}, eval loss {ref[1]:.4f})" if ref else "")
        lines += [
            head,
            "",
            "| variant | eval loss | per seed | vs best grid | metric | GeN updates / fallbacks | recomputes / step |",
            "|---|---|---|---|---|---|---|",
        ]
        for variant, runs in block.get("variants", {}).items():
            losses = [r["eval_loss"] if r["eval_loss"] is not None else math.inf for r in runs]
            metrics = [r["metric"] for r in runs if r["metric"] is not None]
            mean = statistics.mean(losses)
            std = statistics.stdev(losses) if len(losses) > 1 and math.isfinite(mean) else 0.0
            vs = f"{(mean / ref[1] - 1):+.1%}" if ref and math.isfinite(mean) else "-"
            metric = f"{statistics.mean(metrics):.4g}" if metrics else "-"
            updates = f"{statistics.mean(r['gen_updates'] for r in runs):.0f} / " \
                      f"{statistics.mean(r['gen_fallbacks'] for r in runs):.0f}"  # fmt: skip
            per_seed = " / ".join(_loss(r["eval_loss"]) for r in sorted(runs, key=lambda r: r["seed"]))
            rate = f"{statistics.mean(r['gen_updates'] / len(r['lr_trace']) for r in runs):.3f}"
            lines.append(
                f"| {variant} | {mean:.4f} ({std:.4f}), n={len(runs)} | {per_seed} | {vs} | {metric} | {updates} "
                f"| {rate} |"
            )
        lines += gap_table(block.get("variants", {}))
        for variant, runs in block.get("sweeps", {}).items():
            seeds = sorted({r["seed"] for r in runs})
            lines += ["", f"Starting-lr sweep, {variant} (seeds {', '.join(map(str, seeds))}; mean eval loss):", "",
                      "| starting lr | eval loss | vs best grid |", "|---|---|---|"]  # fmt: skip
            for lr in sorted({r["lr"] for r in runs}):
                losses = [r["eval_loss"] if r["eval_loss"] is not None else math.inf for r in runs if r["lr"] == lr]
                loss = statistics.mean(losses)
                vs = f"{(loss / ref[1] - 1):+.1%}" if ref and math.isfinite(loss) else "-"
                lines.append(f"| {lr:g} | {round(loss, 4) if math.isfinite(loss) else 'diverged'} | {vs} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["digits", "gpt2", "minilm"])
    parser.add_argument("--seeds", nargs="+", default=["digits=3", "gpt2=3", "minilm=3", "diabetes=3"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--sweep-variants", nargs="*", default=["defaults"], help="variants to sweep the start lr of")
    parser.add_argument("--sweep-seeds", type=int, default=1, help="seeds per starting lr in the sweeps")
    parser.add_argument("--holdout", action="store_true", help="the fourth task: defaults vs its own AdamW grid")
    parser.add_argument("--quality", default=str(HERE / "results" / "quality.json"))
    parser.add_argument("--json", default=str(HERE / "results" / "ablation.json"))
    parser.add_argument("--markdown", default=str(HERE / "RESULTS_ablation.md"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    seeds = {k: int(v) for k, _, v in (s.partition("=") for s in args.seeds)}
    quality = json.load(open(args.quality)) if os.path.exists(args.quality) else {}
    data = json.load(open(args.json)) if args.resume and os.path.exists(args.json) else {"tasks": {}, "grids": {}}
    command = shlex.join(["python", "benchmarks/ablation.py", *(sys.argv[1:] if argv is None else argv)])
    data["meta"] = {"commands": [*data.get("meta", {}).get("commands", []), command],
                    "threads": torch.get_num_threads()}  # fmt: skip
    workdir = tempfile.mkdtemp(prefix="hf-gen-ablation-")
    tasks = ["diabetes"] if args.holdout else args.tasks
    for name in tasks:
        steps = DEFAULT_STEPS[name]
        reference = quality.get("tasks", {}).get(name, {}).get("config", {}).get("steps", steps)
        if reference != steps:
            parser.error(f"{args.quality} ran {name} for {reference} steps, the ablation runs {steps}: pass --quality "
                         "with the results of the full profile (python benchmarks/quality.py)")  # fmt: skip
        task = make_task(name, steps)
        block = data["tasks"].setdefault(name, {})
        block["config"] = {"description": task.description, "steps": task.steps}
        if args.holdout:
            done = {(r["contender"], r["seed"]) for r in data["grids"].get(name, [])}
            for seed in range(seeds.get(name, 3)):
                for family in ("adamw-linear", "adamw-cosine"):
                    for lr in task.grid:
                        contender = Contender(family, lr)
                        if (contender.name, seed) in done:
                            continue
                        record = run_contender(contender, task, seed, workdir)
                        record["role"] = "main"
                        data["grids"].setdefault(name, []).append(record)
                        save(args.json, data)
        for variant in args.variants:
            runs = block.setdefault("variants", {}).setdefault(variant, [])
            for seed in range(seeds.get(name, 1)):
                if any(r["seed"] == seed for r in runs):
                    continue
                runs.append(run_gen(task, seed, TRAINER_DEFAULT_LR, VARIANTS[variant], workdir))
                save(args.json, data)
                print(f"{name} {variant} seed {seed}: eval loss {runs[-1]['eval_loss']}", flush=True)
        for variant in args.sweep_variants:
            runs = block.setdefault("sweeps", {}).setdefault(variant, [])
            for seed in range(args.sweep_seeds):
                for lr in SWEEP:
                    if any(r["lr"] == lr and r["seed"] == seed for r in runs):
                        continue
                    runs.append(run_gen(task, seed, lr, VARIANTS[variant], workdir))
                    save(args.json, data)
                    print(f"{name} sweep {variant} lr {lr:g} seed {seed}: eval loss {runs[-1]['eval_loss']}",
                          flush=True)  # fmt: skip
    with open(args.markdown, "w") as handle:
        handle.write(markdown(data, quality))
    np.set_printoptions(precision=4)
    print(markdown(data, quality))
    return 0


if __name__ == "__main__":
    sys.exit(main())
