"""How far a run's outcome moves when its initial weights change in the last bits.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/perturbation.py [--tasks digits diabetes cancer wine gpt2] [--seeds 3]
        [--perturbations 4] [--scale 1.2e-7] [--contender TASK=FAMILY@LR ...]
        [--json benchmarks/results/perturbation.json] [--markdown benchmarks/RESULTS_perturbation.md]

For each task, GeN-AdamW at its defaults (from the Trainer's default lr; ``--gen-family`` runs another GeN family)
and the task's best AdamW grid point run on the same seeds, once as the seed makes them and ``--perturbations`` more
times with every initial weight multiplied by ``1 + scale * z`` (``z`` standard normal from a generator of its own;
the default scale is float32's unit roundoff, 2^-23, so most weights move by one unit in the last place and some not
at all). Data order, batches and everything else stay the same. It is a lower bound on what another CPU, thread
count or kernel library does to a run, which rounds differently at every step. The tables report, per contender, the
spread of each seed's final eval loss over its perturbations (max - min, relative to the median), how far the mean
over seeds (the number the suite table compares) moves, and GeN against the grid point perturbation by perturbation.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import suite_table  # noqa: E402
from _contenders import GEN_VARIANTS, TRAINER_DEFAULT_LR, Contender, run_contender  # noqa: E402
from _tasks import build_task  # noqa: E402
from quality import FULL, SUITE  # noqa: E402

PROFILES = {**FULL, **SUITE}  # steps and builder options per task, as quality.py runs them


def best_grid_point(task: str) -> str | None:
    """The task's best AdamW grid point as the suite table picks it (``suite_table.row``), at the horizon this script
    runs the task at; None when no results file has that row."""
    for label, files, name, use in suite_table.SOURCES:
        block = suite_table.load([suite_table.RESULTS / f for f in files], name) if name == task else None
        if block is not None and block["config"]["steps"] == PROFILES[task]["steps"]:
            return suite_table.row(label, block, use)["best"]
    return None


def parse_contender(text: str) -> Contender:
    family, _, lr = text.partition("@")
    return Contender(family, float(lr) if lr else None)


def perturbed(model: torch.nn.Module, scale: float, generator_seed: int) -> torch.nn.Module:
    """``model`` with every floating-point parameter multiplied by ``1 + scale * z`` (in place)."""
    generator = torch.Generator().manual_seed(generator_seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.is_floating_point():
                noise = torch.randn(parameter.shape, generator=generator, dtype=torch.float64)
                parameter.copy_((parameter.double() * (1 + scale * noise)).to(parameter.dtype))
    return model


def run_task(name: str, contenders: list[Contender], seeds: list[int], perturbations: int, scale: float) -> list[dict]:
    task = build_task(name, PROFILES[name]["steps"], **PROFILES[name]["options"])
    unperturbed = task.model
    records = []
    with tempfile.TemporaryDirectory() as workdir:
        for k in range(perturbations + 1):
            # k = 0: the seed's own weights; k >= 1: the k-th perturbation of them.
            task.model = (
                unperturbed if k == 0 else (lambda seed, k=k: perturbed(unperturbed(seed), scale, 7919 * k + seed))
            )
            for seed in seeds:
                for contender in contenders:
                    record = run_contender(contender, task, seed, workdir)
                    records.append(
                        {
                            "task": name,
                            "contender": contender.name,
                            "seed": seed,
                            "perturbation": k,
                            "eval_loss": record["eval_loss"],
                            "metric": record["metric"],
                        }
                    )
                    print(
                        f"{name} {contender.name} seed {seed} perturbation {k}: {record['eval_loss']:.4f}", flush=True
                    )
    return records


def summarise(records: list[dict]) -> list[dict]:
    rows = []
    for task in dict.fromkeys(r["task"] for r in records):
        for contender in dict.fromkeys(r["contender"] for r in records if r["task"] == task):
            mine = [r for r in records if r["task"] == task and r["contender"] == contender]
            seeds = sorted({r["seed"] for r in mine})
            ks = sorted({r["perturbation"] for r in mine})
            loss = {(r["seed"], r["perturbation"]): r["eval_loss"] for r in mine}
            spreads = []
            for seed in seeds:
                values = [loss[seed, k] for k in ks]
                spreads.append((max(values) - min(values)) / statistics.median(values))
            means = [statistics.fmean(loss[seed, k] for seed in seeds) for k in ks]
            rows.append(
                {
                    "task": task,
                    "contender": contender,
                    "seeds": len(seeds),
                    "perturbations": len(ks) - 1,
                    "mean_unperturbed": means[0],
                    "mean_min": min(means),
                    "mean_max": max(means),
                    "seed_spread_median": statistics.median(spreads),
                    "seed_spread_max": max(spreads),
                }
            )
    return rows


def against_best(records: list[dict]) -> list[dict]:
    """Per task, GeN contender, grid point (a contender that is not a GeN family; a task merged from files run when
    different grid points were best has several) and perturbation: GeN's mean eval loss over seeds against the grid
    point's, as a fraction, over the (seed, perturbation) runs both have."""
    rows = []
    for task in dict.fromkeys(r["task"] for r in records):
        mine = [r for r in records if r["task"] == task]
        loss = {(r["contender"], r["seed"], r["perturbation"]): r["eval_loss"] for r in mine}
        names = list(dict.fromkeys(r["contender"] for r in mine))
        grids = [name for name in names if name.partition("@")[0] not in GEN_VARIANTS]
        for grid, gen in ((grid, gen) for grid in grids for gen in names if gen not in grids):
            pairs = sorted({(s, k) for (c, s, k) in loss if c == gen} & {(s, k) for (c, s, k) in loss if c == grid})
            ratios = []
            for k in sorted({k for _, k in pairs}):
                seeds = [s for s, kk in pairs if kk == k]
                ours = statistics.fmean(loss[gen, s, k] for s in seeds)
                theirs = statistics.fmean(loss[grid, s, k] for s in seeds)
                ratios.append(ours / theirs - 1)
            if ratios:
                rows.append(
                    {"task": task, "gen": gen, "best": grid, "unperturbed": ratios[0], "low": min(ratios),
                     "high": max(ratios)}
                )  # fmt: skip
    return rows


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        "# Last-bit perturbations of the initial weights",
        "",
        "Commands: " + "; ".join(f"`{command}`" for command in meta["commands"]) + ".",
        "",
        f"Every initial weight multiplied by `1 + {meta['scale']:.3g} z`; each seed run as it is and perturbed the "
        "number of times the perturbations column gives.",
        "",
        "| task | contender | seeds | perturbations | mean eval loss (unperturbed) | "
        "range of the mean over perturbations | a seed's spread (median / largest) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        low = 100 * (row["mean_min"] / row["mean_unperturbed"] - 1)
        high = 100 * (row["mean_max"] / row["mean_unperturbed"] - 1)
        lines.append(
            f"| {row['task']} | {row['contender']} | {row['seeds']} | {row['perturbations']} | "
            f"{row['mean_unperturbed']:.4f} | "
            f"{row['mean_min']:.4f} to {row['mean_max']:.4f} ({low:+.1f}% to {high:+.1f}%) | "
            f"{100 * row['seed_spread_median']:.1f}% / {100 * row['seed_spread_max']:.1f}% |"
        )
    lines += [
        "",
        "| task | GeN | grid point | against it, unperturbed | over the perturbations |",
        "|---|---|---|---|---|",
    ]
    for row in meta["against_best"]:
        spread = f"{100 * row['low']:+.1f}% to {100 * row['high']:+.1f}%"
        lines.append(f"| {row['task']} | {row['gen']} | {row['best']} | {100 * row['unperturbed']:+.1f}% | {spread} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--tasks", nargs="+", default=["digits", "diabetes", "cancer", "wine"], choices=sorted(PROFILES)
    )
    parser.add_argument("--seeds", type=int, default=3, help="run seeds 0 to N - 1")
    parser.add_argument(
        "--seed-list", type=int, nargs="+", metavar="SEED", help="run these seeds instead (e.g. a suite row's worst)"
    )
    parser.add_argument("--perturbations", type=int, default=4)
    parser.add_argument("--scale", type=float, default=2.0**-23)
    parser.add_argument(
        "--contender",
        nargs="*",
        default=[],
        metavar="TASK=FAMILY@LR",
        help="replace a task's best grid point (default: the suite table's)",
    )
    parser.add_argument("--gen-family", default="gen-adamw", help="the GeN family to run (default: the defaults)")
    alone = parser.add_mutually_exclusive_group()
    alone.add_argument(
        "--gen-only", action="store_true", help="run GeN alone (the comparison with the grid point is then left out)"
    )
    alone.add_argument(
        "--grid-only", action="store_true", help="run the grid point alone (its own spread, beside a GeN run's file)"
    )
    parser.add_argument("--json", default=str(HERE / "results" / "perturbation.json"))
    parser.add_argument("--markdown", default=str(HERE / "RESULTS_perturbation.md"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--render", nargs="+", metavar="JSON", help="run nothing: merge these result files into --markdown"
    )
    args = parser.parse_args(argv)
    if args.render:
        parts = [json.loads(Path(path).read_text()) for path in args.render]
        records = [record for part in parts for record in part["records"]]
        meta = {
            "commands": [c for part in parts for c in part["meta"]["commands"]],
            "scale": parts[0]["meta"]["scale"],
        }
        meta["against_best"] = against_best(records)
        Path(args.markdown).write_text(markdown(summarise(records), meta))
        print(markdown(summarise(records), meta))
        return
    if args.seeds < 1 or args.perturbations < 1 or not args.scale > 0:
        parser.error("--seeds and --perturbations must be at least 1, and --scale positive")
    if args.seed_list is not None and (min(args.seed_list) < 0 or len(set(args.seed_list)) != len(args.seed_list)):
        parser.error(f"--seed-list takes distinct seeds >= 0; got {args.seed_list}")
    seeds = args.seed_list if args.seed_list is not None else list(range(args.seeds))
    if args.gen_family not in GEN_VARIANTS:
        parser.error(f"--gen-family takes one of {', '.join(GEN_VARIANTS)}; got {args.gen_family!r}")
    best = {}
    for item in args.contender:
        task, sep, contender = item.partition("=")
        if not sep or task not in PROFILES or "@" not in contender:
            parser.error(f"--contender takes TASK=FAMILY@LR with TASK one of {sorted(PROFILES)}; got {item!r}")
        best[task] = contender
    for task in [] if args.gen_only else args.tasks:
        best[task] = best.get(task) or best_grid_point(task)
        if best[task] is None:
            parser.error(
                f"no results file has {task}'s grid at {PROFILES[task]['steps']} steps to take its best point from; "
                f"pass --contender {task}=FAMILY@LR, or --gen-only"
            )
    torch.set_num_threads(args.threads)
    records = []
    for name in args.tasks:
        contenders = [] if args.grid_only else [Contender(args.gen_family, TRAINER_DEFAULT_LR)]
        if not args.gen_only:
            contenders.append(parse_contender(best[name]))
        records += run_task(name, contenders, seeds, args.perturbations, args.scale)
    meta = {
        "commands": ["python benchmarks/perturbation.py " + " ".join(argv if argv is not None else sys.argv[1:])],
        "scale": args.scale,
        "perturbations": args.perturbations,
        "threads": args.threads,
    }
    rows = summarise(records)
    meta["against_best"] = against_best(records)
    Path(args.json).write_text(json.dumps({"meta": meta, "records": records, "summary": rows}, indent=1))
    Path(args.markdown).write_text(markdown(rows, meta))
    print(markdown(rows, meta))


if __name__ == "__main__":
    main()
