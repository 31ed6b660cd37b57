"""Tables, verdicts and plots for ``benchmarks/quality.py``, from its raw JSON (nothing here trains)."""

from __future__ import annotations

import math
import os
import statistics

from _contenders import FAMILIES, LR_FREE

__all__ = ["render", "summarize"]

GRID_FAMILIES = ("adamw-linear", "adamw-cosine", "adamw-cosine-warmup", "adamw-constant")
GEN_DEFAULT = "gen-adamw@5e-05"


def _stats(values: list[float | None]) -> tuple[float, float, int]:
    """(mean, std, diverged) of the finite values; a diverged run (None) makes the mean nan."""
    finite = [v for v in values if v is not None]
    diverged = len(values) - len(finite)
    if diverged or not finite:
        return math.nan, math.nan, diverged
    return statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else 0.0, 0


def summarize(runs: list[dict], role: str = "main") -> dict[str, dict]:
    """Per contender over its seeds: eval loss and metric (mean, std), wall time, diverged runs.

    Contenders come in the order of ``FAMILIES``, then by lr. Contenders evaluated on an iterate average (DoG) also
    get their last iterate's eval loss and metric (``last_eval_loss``, ``last_metric`` and their std).
    """
    out: dict[str, dict] = {}
    for run in runs:
        if run["role"] == role:
            entry = out.setdefault(run["contender"], {"family": run["family"], "lr": run["lr"], "runs": []})
            entry["runs"].append(run)
    for entry in out.values():
        loss, loss_std, diverged = _stats([r["eval_loss"] for r in entry["runs"]])
        metric, metric_std, _ = _stats([r["metric"] for r in entry["runs"]])
        entry.update(
            eval_loss=loss, eval_loss_std=loss_std, metric=metric, metric_std=metric_std, diverged=diverged,
            seeds=len(entry["runs"]), wall_s=statistics.fmean(r["wall_s"] for r in entry["runs"]),
        )  # fmt: skip
        if all("eval_loss_last_iterate" in r for r in entry["runs"]):
            last, last_std, _ = _stats([r["eval_loss_last_iterate"] for r in entry["runs"]])
            last_metric, last_metric_std, _ = _stats([r["metric_last_iterate"] for r in entry["runs"]])
            entry.update(
                last_eval_loss=last, last_eval_loss_std=last_std, last_metric=last_metric,
                last_metric_std=last_metric_std,
            )  # fmt: skip
        del entry["runs"]
    order = {family: i for i, family in enumerate(FAMILIES)}
    return dict(sorted(out.items(), key=lambda item: (order.get(item[1]["family"], len(order)), item[1]["lr"] or 0.0)))


def _pct(value: float, reference: float) -> float:
    return 100.0 * (value - reference) / reference


def _f(value: float, digits: int = 4) -> str:
    return "diverged" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _pm(mean: float, std: float, digits: int = 4) -> str:
    return _f(mean, digits) if not math.isfinite(mean) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _best_grid(summary: dict) -> str | None:
    grid = [(s["eval_loss"], name) for name, s in summary.items() if s["family"] in GRID_FAMILIES]
    grid = [(loss, name) for loss, name in grid if math.isfinite(loss)]
    return min(grid)[1] if grid else None


def _flatness(points: dict[float, float | None]) -> float:
    """Spread of final eval loss over the sweep: max - min (inf when a point diverged)."""
    values = list(points.values())
    if any(v is None for v in values):
        return math.inf
    return max(values) - min(values)


def analyse(data: dict) -> dict:
    """Per task: summary, best grid point, GeN vs grid and peers, robustness curves; then the three targets."""
    result = {}
    for name, block in data["tasks"].items():
        summary = summarize(block["runs"])
        best = _best_grid(summary)
        entry = {"summary": summary, "best_grid": best}
        gen = summary.get(GEN_DEFAULT)
        if gen and best:
            entry["gen_vs_best_pct"] = _pct(gen["eval_loss"], summary[best]["eval_loss"])
        entry["gen_variants_vs_best_pct"] = {
            name: _pct(s["eval_loss"], summary[best]["eval_loss"])
            for name, s in summary.items()
            if best and s["family"].startswith("gen-")
        }
        entry["gen_vs_peer_pct"] = {
            peer: _pct(gen["eval_loss"], s["eval_loss"])
            for peer, s in summary.items()
            if gen and s["family"] in LR_FREE
        }
        curves: dict[str, dict[float, float | None]] = {}
        for run in block["runs"]:
            if run["role"] == "robustness":
                curves.setdefault(run["family"], {})[run["lr"]] = run["eval_loss"]
        entry["robustness"] = {family: dict(sorted(points.items())) for family, points in curves.items()}
        entry["flatness"] = {family: _flatness(points) for family, points in curves.items()}
        result[name] = entry
    targets = {
        "within_1pct_of_best_grid": {
            n: e.get("gen_vs_best_pct") is not None and e["gen_vs_best_pct"] <= 1.0 for n, e in result.items()
        },
        "ahead_of_every_lr_free_peer": {
            n: bool(e["gen_vs_peer_pct"]) and all(v < 0 for v in e["gen_vs_peer_pct"].values())
            for n, e in result.items()
        },
        "flatter_than_adamw_cosine": {
            n: "gen-adamw" in e["flatness"]
            and "adamw-cosine" in e["flatness"]
            and e["flatness"]["gen-adamw"] < e["flatness"]["adamw-cosine"]
            for n, e in result.items()
        },
    }
    return {"tasks": result, "targets": targets}


def _task_section(name: str, block: dict, entry: dict, prefix: str) -> list[str]:
    cfg = block["config"]
    metric = cfg["metric"]
    lines = [f"### {name}", "", cfg["description"] + f". Seeds: {cfg['seeds']}.", ""]
    lines += [f"| contender | (starting) lr | eval loss | {metric} | wall s / run |", "|---|---|---|---|---|"]
    summary = entry["summary"]
    best = entry["best_grid"]
    for contender, s in summary.items():
        mark = " **(best grid point)**" if contender == best else ""
        lr = "-" if s["lr"] is None else f"{s['lr']:g}"
        diverged = f" ({s['diverged']}/{s['seeds']} diverged)" if s["diverged"] else ""
        lines.append(
            f"| {contender}{mark} | {lr} | {_pm(s['eval_loss'], s['eval_loss_std'])}{diverged} | "
            f"{_pm(s['metric'], s['metric_std'], 4 if metric == 'accuracy' else 2)} | {s['wall_s']:.1f} |"
        )
    lines.append("")
    if "gen_vs_best_pct" in entry:
        lines.append(
            f"GeN-AdamW (defaults) vs the best grid point ({best}): eval loss {entry['gen_vs_best_pct']:+.2f}% "
            f"(negative = GeN lower)."
        )
    if entry["gen_variants_vs_best_pct"]:
        variants = ", ".join(f"{n} {v:+.2f}%" for n, v in entry["gen_variants_vs_best_pct"].items())
        lines.append(f"Every GeN variant's eval loss vs the best grid point: {variants}.")
    if entry["gen_vs_peer_pct"]:
        peers = ", ".join(f"{p} {v:+.2f}%" for p, v in entry["gen_vs_peer_pct"].items())
        lines.append(f"GeN-AdamW (defaults) eval loss vs each lr-free peer: {peers}.")
    digits = 4 if metric == "accuracy" else 2
    for contender, s in summary.items():
        if "last_eval_loss" in s:
            lines.append(
                f"{contender} is evaluated on its iterate average (as its authors recommend); its last iterate, for "
                f"information: eval loss {_pm(s['last_eval_loss'], s['last_eval_loss_std'])}, {metric} "
                f"{_pm(s['last_metric'], s['last_metric_std'], digits)}."
            )
    lines.append("")
    if entry["robustness"]:
        sweep = sorted({lr for points in entry["robustness"].values() for lr in points})
        lines += ["Robustness (seed 0, final eval loss by starting lr):", ""]
        lines += ["| method | " + " | ".join(f"{lr:g}" for lr in sweep) + " | spread (max - min) |"]
        lines += ["|---|" + "---|" * (len(sweep) + 1)]
        for family, points in entry["robustness"].items():
            cells = " | ".join(_f(points.get(lr)) for lr in sweep)
            lines.append(f"| {family} | {cells} | {_f(entry['flatness'][family])} |")
        lines.append("")
    lines += [f"![lr traces, {name}](results/{prefix}_lr_{name}.png)", ""]
    return lines


def _verdicts(analysis: dict) -> list[str]:
    targets = analysis["targets"]
    tasks = analysis["tasks"]
    lines = ["## Against the quality targets", ""]
    within = targets["within_1pct_of_best_grid"]

    def missing(n: str) -> str | None:
        """What a task's file lacks for the comparisons (its rows' runs may sit in several files), if anything."""
        if GEN_DEFAULT not in tasks[n]["summary"]:
            return "GeN did not run in this file"
        return None if tasks[n]["best_grid"] else "no grid point ran in this file"

    lines.append(
        "1. GeN's default within 1% of the best grid point's eval loss on every task: "
        + ("**met**" if within and all(within.values()) else "**not met**")
        + " ("
        + ", ".join(f"{n}: {missing(n) or format(tasks[n]['gen_vs_best_pct'], '+.2f') + '%'}" for n in within)
        + ")."
    )
    ahead = targets["ahead_of_every_lr_free_peer"]
    wins = sum(ahead.values())

    def against_peers(n: str, v: bool) -> str:
        if GEN_DEFAULT not in tasks[n]["summary"]:
            return "GeN did not run in this file"
        return ("yes" if v else "no") if tasks[n]["gen_vs_peer_pct"] else "no peer ran in this file"

    lines.append(
        "2. Ahead of every lr-free peer's default on at least two of three tasks: "
        + ("**met**" if wins >= 2 else "**not met**")
        + f" (ahead of all peers on {wins} of {len(ahead)}: "
        + ", ".join(f"{n}: {against_peers(n, v)}" for n, v in ahead.items())
        + ")."
    )
    flat = targets["flatter_than_adamw_cosine"]
    # A task whose starting-lr sweep did not run (for both families) has no spread to compare, not a diverged one.
    swept = [n for n in flat if {"gen-adamw", "adamw-cosine"} <= set(tasks[n]["flatness"])]
    if not swept:
        lines.append(
            "3. A flatter robustness curve than AdamW + cosine: not measured (no starting-lr sweep in this file)."
        )
    else:
        lines.append(
            "3. A flatter robustness curve than AdamW + cosine: "
            + ("**met**" if all(flat.values()) else "**not met**")
            + " ("
            + ", ".join(
                f"{n}: spread {_f(tasks[n]['flatness']['gen-adamw'])} vs {_f(tasks[n]['flatness']['adamw-cosine'])}"
                if n in swept
                else f"{n}: no starting-lr sweep in this file"
                for n in flat
            )
            + ")."
        )
    lines.append("")
    for name, entry in tasks.items():
        s = entry["summary"]
        if GEN_DEFAULT not in s:
            continue
        better = [p for p, v in entry["gen_vs_peer_pct"].items() if v < 0]
        worse = [p for p, v in entry["gen_vs_peer_pct"].items() if v >= 0]
        if not entry["gen_vs_peer_pct"]:  # the peers ran into another file (the suite's table reads both)
            lines.append(
                f"- **{name}**: no lr-free peer ran in this file; vs the best tuned grid point "
                f"{entry.get('gen_vs_best_pct', math.nan):+.2f}% eval loss."
            )
            continue
        lines.append(
            f"- **{name}**: GeN-AdamW {'wins against' if better else 'beats none of the lr-free peers'}"
            + (f" {', '.join(better)}" if better else "")
            + (f"; loses to {', '.join(worse)}" if worse else "")
            + f"; vs the best tuned grid point {entry.get('gen_vs_best_pct', math.nan):+.2f}% eval loss."
        )
    lines.append("")
    return lines


def _versions(meta: dict) -> str:
    """The package versions; where the commands of a resumed run differ, each value with the commands (1-based)."""
    history = meta.get("versions_by_command") or [{"command": 0, "versions": meta["versions"]}]
    names = list(dict.fromkeys(name for entry in history for name in entry["versions"]))
    parts = []
    for name in names:
        seen: dict[str, list[int]] = {}
        for entry in history:
            if name in entry["versions"]:
                seen.setdefault(entry["versions"][name], []).append(entry["command"] + 1)
        if len(seen) == 1:
            parts.append(f"{name} {next(iter(seen))}")
        else:
            parts.append(
                f"{name} "
                + " / ".join(f"{value} (command {', '.join(map(str, cmds))})" for value, cmds in seen.items())
            )
    return ", ".join(parts)


def render(data: dict, markdown: str, plots: str, quick: bool = False, prefix: str = "quality") -> dict:
    """Write the Markdown tables and the plots; return the analysis."""
    analysis = analyse(data)
    meta = data["meta"]
    lines = [
        "## Quality (`benchmarks/quality.py`)" + (" -- QUICK SMOKE RUN, not a result" if quick else ""),
        "",
        "Command"
        + ("s" if len(meta.get("commands", [])) > 1 else "")
        + ": "
        + ", then ".join(
            f"({i}) `{c}`" if len(meta.get("commands", [])) > 1 else f"`{c}`"
            for i, c in enumerate(meta.get("commands", [meta["command"]]), start=1)
        )
        + f" ({meta['wall_s'] / 60:.1f} min in all, {meta['threads']} torch thread(s), "
        f"{meta['cpus']} CPUs, {meta['platform']}). Versions: " + _versions(meta) + ".",
        "",
        "Contenders: " + "; ".join(f"`{k}` = {v}" for k, v in FAMILIES.items()) + ". Same steps, same sample order "
        "and same initial weights per seed for all; gradient clipping at 1.0, no weight decay, no warmup. Eval loss "
        "is the final held-out loss (DoG: that of its iterate average); mean ± std over seeds. Raw numbers and the "
        "lr used at every step: `results/quality.json`."
        + (
            " Wall times compare only runs of the same command (the commands ran at different times, on a shared "
            "machine)."
            if len(meta.get("commands", [])) > 1
            else ""
        ),
        "",
    ]
    lines += _verdicts(analysis)
    lines += ["## Per task", ""]
    for name, block in data["tasks"].items():
        lines += _task_section(name, block, analysis["tasks"][name], prefix)
    if any(entry["robustness"] for entry in analysis["tasks"].values()):
        lines += [f"![robustness](results/{prefix}_robustness.png)", ""]
    os.makedirs(os.path.dirname(os.path.abspath(markdown)), exist_ok=True)
    with open(markdown, "w") as handle:
        handle.write("\n".join(lines))
    plot_traces(data, plots, prefix)
    plot_robustness(analysis, plots, prefix)
    return analysis


def plot_traces(data: dict, folder: str, prefix: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(folder, exist_ok=True)
    for name, block in data["tasks"].items():
        fig, ax = plt.subplots(figsize=(9, 5.5))
        for run in block["runs"]:
            if run["role"] != "main" or run["seed"] != 0 or not run["lr_trace"]:
                continue
            grid = run["family"] in GRID_FAMILIES
            steps = range(1, len(run["lr_trace"]) + 1)
            trace = [max(v, 1e-12) for v in run["lr_trace"]]
            style = {"lw": 0.8, "alpha": 0.45, "ls": "--" if run["family"] == "adamw-linear" else ":"} if grid else {
                "lw": 2.0}  # fmt: skip
            ax.plot(steps, trace, label=run["contender"], **style)
        ax.set_yscale("log")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("lr used (Prodigy / D-Adaptation: d x lr; Mechanic: lr x sum(s); DoG: eta)", fontsize=8)
        ax.set_title(f"{name}: lr used at each step (seed 0)")
        ax.legend(fontsize=6, ncol=2, loc="best")
        fig.tight_layout()
        fig.savefig(os.path.join(folder, f"{prefix}_lr_{name}.png"), dpi=110)
        plt.close(fig)


def plot_robustness(analysis: dict, folder: str, prefix: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = {n: e for n, e in analysis["tasks"].items() if e["robustness"]}
    if not tasks:
        return
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 4), squeeze=False)
    for ax, (name, entry) in zip(axes[0], tasks.items(), strict=True):
        finite = [v for points in entry["robustness"].values() for v in points.values() if v is not None]
        ceiling = max(finite) * 1.1 if finite else 1.0
        for family, points in entry["robustness"].items():
            lrs = list(points)
            values = [ceiling if v is None else v for v in points.values()]
            ax.plot(lrs, values, marker="o", label=FAMILIES.get(family, family))
            for lr, v in points.items():
                if v is None:
                    ax.annotate("diverged", (lr, ceiling), fontsize=7)
        best = entry["best_grid"]
        if best:
            ax.axhline(entry["summary"][best]["eval_loss"], color="grey", ls="--", lw=1, label=f"best grid: {best}")
        ax.set_xscale("log")
        ax.set_xlabel("starting lr")
        ax.set_ylabel("final eval loss")
        ax.set_title(name)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(folder, f"{prefix}_robustness.png"), dpi=110)
    plt.close(fig)
