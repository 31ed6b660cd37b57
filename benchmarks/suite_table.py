"""One table for every task of the benchmark suite: GeN at its defaults against the best point of the tuned AdamW
grid, the Trainer's default schedule and the lr-free peers.

    python benchmarks/suite_table.py --markdown benchmarks/RESULTS_suite.md

Reads the raw JSON that ``quality.py`` wrote (nothing here trains). Each row is one task at one horizon; a
``--source LABEL=FILE[,FILE...]:TASK`` adds or replaces one (several files of the same task are merged, as when a
second seed was run into another file). ``--gen CONTENDER --also FILE...`` puts another GeN contender (an option's
family, e.g. ``gen-adamw-pace@5e-05``) in the default's place, its runs read from the extra files beside each row's
own; rows where it did not run read "not run". The defaults are the committed results; ``--only`` keeps the
``--source`` rows alone. To rerun the whole suite, see ``run_suite.sh``.

Per row: the best grid point (lowest mean eval loss over the AdamW linear, cosine and cosine-with-warmup grids) and
its seeds; GeN's default (``gen-adamw`` from the Trainer's default lr 5e-5) as the mean of its seeds, each seed, and
the difference in eval loss and in accuracy points; the Trainer's defaults; the lr-free peers at their defaults, and
how many of them GeN is ahead of. "Within" means at most 1% over the best point's eval loss and at most 1 accuracy
point under it (the project's goal); "ahead" means a lower eval loss than the best point. The last column is the
grid's runner-up (its second-best point) against its best. Below the table, the same verdict counted for GeN, for each
lr-free peer and for the Trainer's defaults; for the runner-up; and the best point's own schedule at the grid's
neighbouring lrs: how high the goal's bar is.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

from _contenders import LR_FREE
from _report import GEN_DEFAULT, GRID_FAMILIES, _pct, summarize

# The default before each settled line was weighed as one batch's measurement (the same memory in steps)
PREVIOUS_DEFAULT = "gen-adamw-no-kalman@5e-05"

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

# What the task was used for. The decay shape was dropped after GeN with and without it had run on every task but
# the last; the tasks before that only reported the defaults, apart from the fast start's choice, made on all of them.
# The fast start's jitter charge was chosen on every row then in the table (the fortunes fine-tune first); glosses was
# added after it, and then chose, with the rest, the charge on every line; verbs was added after that, and chose,
# with the rest, the lines' unit; docstrings was added after that, and chose, with the rest, the count; manpages
# was added after that, and chose, with the rest, the Kalman gain; foldoc was added after that, and has chosen nothing.
SEEN = "seen when the defaults were last chosen"
HELD_OUT = "held out: added after the defaults were last chosen"
# the grid's runner-up on the fine-tunes where it had run on one seed, on 3 (LoRA's on 5: it became the best point)
RUNNER_UP = ["runner_up.json", "runner_up_b.json"]
# (label, files, task in those files, what the task was used for)
SOURCES = [
    ("digits", ["quality.json"], "digits", "chose the defaults"),
    ("gpt2", ["quality.json"], "gpt2", "chose the defaults"),
    ("minilm", ["quality.json"], "minilm", "chose the defaults"),
    ("diabetes", ["suite_diabetes.json"], "diabetes", SEEN),
    ("plays", ["suite_plays.json", *RUNNER_UP], "plays", SEEN),
    ("genres", ["suite_genres.json", *RUNNER_UP], "genres", SEEN),
    ("plays-lora", ["suite_plays_lora.json", *RUNNER_UP], "plays-lora", SEEN),
    ("code", ["suite_code.json"], "code", SEEN),
    (
        "gpt2, 3,000 steps",
        [
            "horizon_gpt2_a.json",
            "horizon_gpt2_b.json",
            "horizon_gpt2_c.json",
            "horizon_gpt2_d.json",
            "pace_gpt2_3000.json",
            "count_j.json",
            "kalman_gpt2_3000.json",
        ],
        "gpt2",
        SEEN,
    ),
    ("cancer", ["suite_cancer.json"], "cancer", SEEN),
    ("wine", ["suite_wine.json"], "wine", SEEN),
    ("fortunes", ["suite_fortunes.json", *RUNNER_UP], "fortunes", SEEN),
    ("glosses", ["suite_glosses.json", *RUNNER_UP], "glosses", SEEN),
    # the peers ran into a file of their own, beside the grid's process
    ("verbs", ["suite_verbs.json", "suite_verbs_peers.json", *RUNNER_UP], "verbs", SEEN),
    (
        "docstrings",
        ["suite_docstrings.json", "suite_docstrings_peers.json"],
        "docstrings",
        SEEN,
    ),
    (
        "manpages",
        [
            "suite_manpages.json",
            "suite_manpages_warmup.json",
            "suite_manpages_peers.json",
            "suite_manpages_uncounted.json",
        ],
        "manpages",
        SEEN,
    ),
    (
        "foldoc",
        [
            "suite_foldoc.json",
            "suite_foldoc_warmup.json",
            "suite_foldoc_peers.json",
            "suite_foldoc_previous.json",
            *RUNNER_UP,
        ],
        "foldoc",
        HELD_OUT,
    ),
    (
        "minilm, 3,000 steps",
        [
            "horizon_minilm_a.json",
            "horizon_minilm_b.json",
            "horizon_minilm_c.json",
            "horizon_minilm_d.json",
            "horizon_minilm_e.json",
            "horizon_minilm_f.json",
            "horizon_minilm_g.json",
            "pace_minilm_long.json",
            "count_i.json",
            "kalman_long.json",
        ],
        "minilm-long",
        SEEN,
    ),
]
KIND = {
    "digits": "MLP from scratch, 10 classes",
    "gpt2": "byte LM from a config",
    "minilm": "pretrained fine-tune, 3 classes",
    "diabetes": "MLP regression from scratch",
    "plays": "pretrained fine-tune, 10 classes",
    "genres": "pretrained fine-tune, 6 classes",
    "plays-lora": "pretrained LoRA fine-tune, 10 classes",
    "code": "byte LM from a config",
    "cancer": "MLP from scratch, 2 classes",
    "wine": "MLP from scratch, 3 classes",
    "fortunes": "pretrained fine-tune, 8 classes",
    "glosses": "pretrained fine-tune, 8 classes",
    "verbs": "pretrained fine-tune, 10 classes",
    "docstrings": "pretrained fine-tune, 10 classes",
    "manpages": "pretrained fine-tune, 2 classes",
    "foldoc": "pretrained fine-tune, 12 unbalanced classes",
}


def load(files: list[Path], task: str, also: list[Path] = ()) -> dict | None:
    """The task's block from ``files`` (runs concatenated), or None when no file has it; then the runs of ``also``
    whose block has the same steps and batch size (the same task at another horizon is another row). A run is read
    once: a later file's run of the same contender, role and seed (a copy kept in two files) is left out."""
    block = None
    seen = set()
    for path in [*files, *also]:
        if not path.exists():
            continue
        with open(path) as handle:
            data = json.load(handle)
        if task not in data.get("tasks", {}):
            continue
        found = data["tasks"][task]
        if path in also and (block is None or any(found["config"][k] != block["config"][k] for k in SAME)):
            continue
        if block is None:
            block = {"config": found["config"], "runs": []}
        for run in found["runs"]:
            key = (run["contender"], run["role"], run["seed"])
            if key not in seen:
                seen.add(key)
                block["runs"].append(run)
    return block


SAME = ("steps", "batch_size")  # what makes a results block the same row


def _seeds(runs: list[dict], contender: str) -> list[dict]:
    return sorted((r for r in runs if r["contender"] == contender and r["role"] == "main"), key=lambda r: r["seed"])


def _spread_points(runs: list[dict]) -> float:
    """Max minus min of the runs' metric, in points (accuracy x 100)."""
    return 100.0 * (max(r["metric"] for r in runs) - min(r["metric"] for r in runs))


def row(label: str, block: dict, use: str, gen_contender: str = GEN_DEFAULT) -> dict:
    """The numbers of one table row, with ``gen_contender`` as GeN (the default's contender unless given)."""
    cfg = block["config"]
    summary = summarize(block["runs"])
    grid = {n: s for n, s in summary.items() if s["family"] in GRID_FAMILIES and math.isfinite(s["eval_loss"])}
    ranked = sorted(grid, key=lambda n: grid[n]["eval_loss"])
    best = ranked[0] if ranked else None
    accuracy = cfg["metric"] == "accuracy"
    out = {
        "label": label,
        "task": cfg,
        "use": use,
        "best": best,
        "best_summary": grid.get(best),
        "accuracy": accuracy,
    }
    if len(ranked) > 1:
        # the grid's second-best point, by the same verdict: what a tuner's next choice would have scored
        second = grid[ranked[1]]
        out["runner_up"] = (
            ranked[1],
            second["seeds"],
            _pct(second["eval_loss"], grid[best]["eval_loss"]),
            100.0 * (second["metric"] - grid[best]["metric"]) if accuracy else None,
        )
    if best:
        # the best point's own schedule at the grid's neighbouring lrs (a factor of about 3 either way)
        own = sorted((s for s in grid.values() if s["family"] == grid[best]["family"]), key=lambda s: s["lr"])
        at = own.index(grid[best])
        out["neighbours"] = [
            (s["lr"] / grid[best]["lr"], _pct(s["eval_loss"], grid[best]["eval_loss"]), s["seeds"])
            for s in own[max(at - 1, 0) : at + 2]
            if s is not grid[best]
        ]
    gen_runs = _seeds(block["runs"], gen_contender)
    out["gen_seeds"] = [(r["seed"], r["eval_loss"], r["metric"]) for r in gen_runs]
    gen = summary.get(gen_contender)
    out["gen"] = gen
    if gen and best:
        out["gen_pct"] = _pct(gen["eval_loss"], grid[best]["eval_loss"])
        out["gen_points"] = 100.0 * (gen["metric"] - grid[best]["metric"]) if accuracy else None
        worst = max((r["eval_loss"] if r["eval_loss"] is not None else math.inf) for r in gen_runs)
        out["worst_seed_pct"] = _pct(worst, grid[best]["eval_loss"])
    out["trainer"] = summary.get("trainer-default")
    previous = summary.get(PREVIOUS_DEFAULT)
    out["previous_pct"] = _pct(previous["eval_loss"], grid[best]["eval_loss"]) if previous and best else None
    peers = {n: s for n, s in summary.items() if s["family"] in LR_FREE}
    out["peers"] = peers
    # the same verdict for each peer and for the Trainer's defaults (a diverged run loses)
    out["others"] = {}
    for s in [*peers.values(), out["trainer"]]:
        if s and best:
            finite = math.isfinite(s["eval_loss"])
            points = 100.0 * (s["metric"] - grid[best]["metric"]) if accuracy and finite else None
            pct = _pct(s["eval_loss"], grid[best]["eval_loss"]) if finite else math.inf
            out["others"][s["family"]] = standing(pct, points)
    if gen:
        out["ahead_of"] = [
            n for n, s in peers.items() if not math.isfinite(s["eval_loss"]) or gen["eval_loss"] < s["eval_loss"]
        ]
    best_seeds = _seeds(block["runs"], best) if best else []
    out["seed_counts"] = (len(gen_runs), len(best_seeds))
    if accuracy and len(gen_runs) > 1 and len(best_seeds) > 1:
        out["spread_points"] = (_spread_points(gen_runs), _spread_points(best_seeds))
    trainer = out["trainer"]
    if gen_runs and trainer and math.isfinite(trainer["eval_loss"]):
        # the goal's floor: no GeN seed ends worse than the Trainer's default schedule at its default lr
        out["below_trainer"] = [r["seed"] for r in gen_runs
                                if r["eval_loss"] is None or r["eval_loss"] > trainer["eval_loss"]]  # fmt: skip
    return out


def standing(pct: float, points: float | None) -> str:
    """The goal's verdict on a contender ``pct`` percent of eval loss and ``points`` accuracy points (None: no
    accuracy) from the best grid point: ahead, within (1% and 1 point), or loses."""
    if points is not None and points < -1.0:
        return "loses"
    if pct < 0:
        return "**ahead**"
    return "within" if pct <= 1.0 else "loses"


def verdict(r: dict) -> str:
    if "gen_pct" not in r:
        return "not run"
    return standing(r["gen_pct"], r["gen_points"])


def _loss_metric(s: dict | None, accuracy: bool) -> str:
    if not s:
        return "-"
    if not math.isfinite(s["eval_loss"]):
        return "diverged"
    return f"{s['eval_loss']:.4f}" + (f" ({s['metric']:.3f})" if accuracy else "")


def _runner_up_text(r: dict) -> str:
    if "runner_up" not in r:
        return "-"
    name, seeds, pct, points = r["runner_up"]
    return f"{name} ({seeds}): {pct:+.1f}%" + (f", {points:+.1f} pt" if points is not None else "")


def render(rows: list[dict]) -> list[str]:
    lines = [
        "| task | kind | used to | steps x batch | best grid point (seeds): eval loss (accuracy) "
        "| the Trainer's defaults | GeN default: mean eval loss (accuracy) | GeN vs best | GeN by seed "
        "| previous default (each settled line weighed with the same memory in steps) vs best | best lr-free peer "
        "| GeN ahead of peers | verdict | the grid's runner-up vs best |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cfg, best, gen = r["task"], r["best"], r["gen"]
        base = r["label"].split(",")[0]
        best_text = (
            f"{best} ({r['best_summary']['seeds']}): {_loss_metric(r['best_summary'], r['accuracy'])}"
            if best
            else "not run"
        )
        if gen:
            points = f", {r['gen_points']:+.1f} pt" if r.get("gen_points") is not None else ""
            vs = f"{r['gen_pct']:+.1f}%{points}" if "gen_pct" in r else "-"
            seeds = " / ".join("diverged" if loss is None else f"{loss:.3f}" for _, loss, _ in r["gen_seeds"])
            ahead = f"{len(r['ahead_of'])} of {len(r['peers'])}" if r["peers"] else "not run"
        else:
            vs, seeds, ahead = "-", "-", "-"
        previous = f"{r['previous_pct']:+.1f}%" if r.get("previous_pct") is not None else "-"
        peers = {n: s for n, s in r["peers"].items() if math.isfinite(s["eval_loss"])}
        top = min(peers, key=lambda n: peers[n]["eval_loss"]) if peers else None
        top_text = f"{top.split('@')[0]}: {_loss_metric(peers[top], r['accuracy'])}" if top else "not run"
        lines.append(
            f"| {r['label']} | {KIND.get(base, '')} | {r['use']} | {cfg['steps']} x {cfg['batch_size']} "
            f"| {best_text} | "
            f"{_loss_metric(r['trainer'], r['accuracy'])} | {_loss_metric(gen, r['accuracy'])} | {vs} | {seeds} | "
            f"{previous} | {top_text} | {ahead} | {verdict(r)} | {_runner_up_text(r)} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--source", nargs="+", default=[], metavar="LABEL=FILE[,FILE]:TASK",
        help="add or replace a row (files relative to benchmarks/results unless absolute)",
    )  # fmt: skip
    parser.add_argument("--only", action="store_true", help="only the --source rows, not the committed suite's")
    parser.add_argument("--markdown", default=None, help="also write the table there")
    parser.add_argument("--gen", default=GEN_DEFAULT, help="the GeN contender in the default's place")
    parser.add_argument(
        "--also", nargs="+", default=[], metavar="FILE",
        help="results files read beside every row's own (an option's runs; relative to benchmarks/results)",
    )  # fmt: skip
    opts = parser.parse_args()
    if opts.only and not opts.source:
        parser.error("--only reads the --source rows alone: pass --source LABEL=FILE[,FILE...]:TASK too")
    sources = {} if opts.only else {label: (files, task, use) for label, files, task, use in SOURCES}
    known = {label: use for label, _, _, use in SOURCES}
    for item in opts.source:
        label, _, rest = item.partition("=")
        files, _, task = rest.rpartition(":")
        if not label or not files or not task:
            parser.error(f"--source {item}: pass LABEL=FILE[,FILE...]:TASK")
        use = known.get(label, "report only")
        sources[label] = (files.split(","), task, use)
    rows = []
    for label, (files, task, use) in sources.items():
        paths = [Path(f) if os.path.isabs(f) else RESULTS / f for f in files]
        block = load(paths, task, [Path(f) if os.path.isabs(f) else RESULTS / f for f in opts.also])
        if block is None:
            print(f"{label}: no results in {', '.join(files)}; skipped")
            continue
        rows.append(row(label, block, use, opts.gen))
    lines = render(rows)
    scored = [r for r in rows if "gen_pct" in r]
    good = [r for r in scored if verdict(r) != "loses"]
    ahead = [r for r in scored if verdict(r) == "**ahead**"]
    majority = [r for r in scored if r["peers"] and 2 * len(r["ahead_of"]) > len(r["peers"])]
    with_peers = [r for r in scored if r["peers"]]
    who = "GeN's default" if opts.gen == GEN_DEFAULT else f"GeN as {opts.gen}"
    summary = [
        "",
        f"{who} is within 1% (and 1 accuracy point) of the best grid point or ahead of it on {len(good)} of "
        f"{len(scored)} rows, ahead on {len(ahead)}; it is ahead of a majority of the lr-free peers on "
        f"{len(majority)} of the {len(with_peers)} rows where they ran.",
    ]
    # the same count for every lr-free peer at its defaults and for the Trainer's defaults, on the rows where each ran
    # (one seed each on most rows), so the goal's bar can be read against what any lr-free method reaches here
    counts: dict[str, list[int]] = {}
    for r in scored:
        for family, said in r["others"].items():
            c = counts.setdefault(family, [0, 0, 0])
            c[0] += said != "loses"
            c[1] += said == "**ahead**"
            c[2] += 1
    summary.append(
        "- The same count for the others at their defaults: "
        + "; ".join(f"{family} {c[0]} of {c[2]} (ahead on {c[1]})" for family, c in counts.items())
        + "."
    )
    # the bar against the tuning it stands for: how often the grid's own second-best point meets it
    second = [r for r in scored if "runner_up" in r]
    close = [r for r in second if standing(r["runner_up"][2], r["runner_up"][3]) != "loses"]
    beaten = [r for r in second if r["gen_pct"] <= r["runner_up"][2]]
    summary.append(
        f"- The grid's own runner-up (its second-best point) is within 1% (and 1 accuracy point) of the best on "
        f"{len(close)} of {len(second)} rows; {who} has an eval loss at or below the runner-up's on {len(beaten)}."
    )
    summary.append(
        "- The best point's own schedule at the grid's neighbouring lrs (eval loss against the best point; seeds): "
        + "; ".join(
            f"{r['label']} "
            + ", ".join(f"{ratio:.2g}x {pct:+.1f}% ({seeds})" for ratio, pct, seeds in r["neighbours"])
            for r in scored
            if r.get("neighbours")
        )
        + "."
    )
    spreads = [r for r in scored if "spread_points" in r]
    for r in spreads:
        g, b = r["spread_points"]
        n_gen, n_best = r["seed_counts"]
        within = "within" if g <= 2 * b else "wider than"
        summary.append(
            f"- {r['label']}: spread of accuracy over seeds (max - min), GeN {g:.1f} points ({n_gen} seeds) against "
            f"the best grid point's {b:.1f} ({n_best} seeds): {within} twice the tuned schedule's."
        )
    # the best point is the lowest mean whatever its seeds, so a row whose best point ran on fewer seeds than GeN
    # rests on those seeds' luck (one seed per lr put a held-out row 4 points on the wrong side once)
    thin = [r for r in scored if r["seed_counts"][1] < r["seed_counts"][0]]
    summary.append(
        "- Rows whose best grid point ran on fewer seeds than GeN: "
        + (", ".join(f"{r['label']} ({r['seed_counts'][1]} against {r['seed_counts'][0]})" for r in thin) or "none")
        + "."
    )
    worse = [r for r in scored if r.get("below_trainer")]
    summary.append(
        "- GeN seeds that end worse than the Trainer's defaults: "
        + ("; ".join(f"{r['label']} seed {', '.join(map(str, r['below_trainer']))}" for r in worse) or "none")
        + "."
    )
    text = "\n".join(lines + summary) + "\n"
    print(text)
    if opts.markdown:
        with open(opts.markdown, "w") as handle:
            handle.write(text)


if __name__ == "__main__":
    main()
