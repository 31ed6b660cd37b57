"""How each traced GeN run's fast start ended, read from the results JSON: to find the runs a change to the fast start
can alter before rerunning anything.

    python benchmarks/fast_start_ends.py                          # counts per task, every traced run
    python benchmarks/fast_start_ends.py --ended unmeasured-cap   # list the runs that ended that way
    python benchmarks/fast_start_ends.py --against-best --families gen-adamw   # each run's level where it settled
    python benchmarks/fast_start_ends.py --settled-lines --families gen-adamw  # which way the settled lines point
    python benchmarks/fast_start_ends.py --level-response --families gen-adamw --files results/suite_*.json
    python benchmarks/fast_start_ends.py --departs-from gen-adamw-uncharged --families gen-adamw --files ...
    python benchmarks/fast_start_ends.py --noise --files results/noise_trace.json

The fast start ends at the first measurement after which the scheduler's interval is no longer 1 (the trace's
``interval``). With the default window lines it ends one of three ways:

* ``inside``: the window line's estimate landed inside the change bound (``[level / c, level * c]``, ``c`` the run's
  ``gen_max_change``);
* ``measured-cap``: the climb was held at the cap of the last step's line, which had a minimiser of its own;
* ``unmeasured-cap``: held at the cap of a last-step line with no minimiser. Since the fast start settles only on a
  measured cap, no run of the current code ends this way; runs made before that change did, and a rerun may differ.

``--against-best`` lists, per run, the level the fast start settled at as a multiple of the lr of the task's best grid
point (lowest mean eval loss of the AdamW grids in the same file, as the suite table picks it), and the run's eval
loss against that point's: on the fine-tunes, where the fast start settles decides the run.

``--settled-lines`` reads the lines after the fast start instead, per task: how many there were, the share that called
for a lower level (an estimate below the level the windows ran at, or a line that did not descend) and for a higher
one (an estimate above it, or a line with no positive curvature along a descent), and the median ``c*`` (estimate over
level) of the lines with an estimate. The other outcomes (a change below the loss's precision, a window taken back)
are counted in neither share.

``--level-response`` asks whether those lines see the level at all, per task: over the settled lines with an
estimate, the least-squares fit of ``log c*`` on ``log(level / best lr)`` (the level the windows ran at over the best
grid point's lr) and on the share of the run gone (``step / steps``: the lines call for less as a run goes on, and the
level falls as it does, so the two must be fitted together). It prints the number of lines, the response with its
standard error (``-1``: a line reads the level's error in full, as a Newton step would; ``0``: it does not see the
level, and the level stays where the fast start left it, whatever the lines' count), the trend over the run (the
change of ``log c*`` from its start to its end at a fixed level), and the lines' noise (the residuals' standard
deviation, in ``log c*``: 0.69 is a factor of 2).

``--departs-from FAMILY`` pairs each run with the run of ``FAMILY`` on the same task, seed, starting lr and step
count (from any of the files) and gives the first step whose lr differs (relative 1e-9): before it the two runs are
the same run. ``fast start`` when that step is at or before the line that ended the paired run's fast start,
``settled`` after it, ``none`` when the traces agree throughout; with both eval losses. It tells which phase an
option's change acted in.

``--noise`` reads the runs made with ``gen_fast_start_noise`` (an option until hf-gen commit 1125904; ``noise_t`` in
their traces: the largest paired difference of a fast-start line's probes in standard errors of its batch's chunks),
per task: the fast-start lines tested, their median ``t``, the share resolved at two standard errors (Student's t for
the line's ``noise_chunks``; in a trace without them, the verdict the run acted on), the moves of the level (a line
after which the level differs from the level before it) and the share of those taken on a line that was not resolved,
and the runs whose fast start ended on a resolved line. With ``gen_fast_start_noise=0`` (family
``gen-adamw-noise-trace``) the runs are the default's, so it tells how much evidence the default's fast start acts on.

``never``: the run ended during its fast start. ``other``: the fast start ended on a line of another kind (one-step
lines: ``gen_fast_start_lines="next"`` or ``gen_probe_batch="next"``/``"same"``). Runs without a ``gen_trace``
(some results files do not keep them) are not read. Nothing trains here.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _contenders import GEN_VARIANTS, gen_settings  # noqa: E402
from _report import _best_grid, _pct, summarize  # noqa: E402

from hf_gen.args import GeNTrainingArguments  # noqa: E402
from hf_gen.core import student_t_quantile  # noqa: E402

# The standard errors the noise test of the runs it reads used (gen_fast_start_noise=2, an option that hf-gen commit
# 1125904 still has): the usual two-sided 95%, 1.96 rounded.
NOISE_Z = 2.0

DEFAULT_MAX_CHANGE = GeNTrainingArguments.gen_max_change
ENDINGS = ("inside", "measured-cap", "unmeasured-cap", "never", "other")


def ending(run: dict) -> tuple[str, dict | None]:
    """How ``run``'s fast start ended (one of ``ENDINGS``), and the trace record where it did (``None``: never)."""
    trace = run["gen_trace"]
    settled = next((record for record in trace if record.get("interval", 1) != 1), None)
    if settled is None:
        return "never", None
    if "one_step_probe_losses" not in settled:
        return "other", settled
    family = run.get("family")
    settings = gen_settings(family, run.get("options", [])) if family in GEN_VARIANTS else {}
    bound = float(settings.get("gen_max_change", DEFAULT_MAX_CHANGE))
    level, estimate = settled["probe_lr"], settled["alpha_star"]
    if estimate is not None and level / bound <= estimate <= level * bound:
        return "inside", settled
    return ("measured-cap" if settled.get("one_step_alpha_star") is not None else "unmeasured-cap"), settled


LOWER = ("not_descent", "nonfinite_loss")  # settled outcomes without an estimate that point down
HIGHER = ("nonpositive_curvature",)  # and up: the loss falls at least linearly, the minimiser lies further out


def settled_lines(run: dict) -> list[tuple[str, float | None]]:
    """The lines after ``run``'s fast start: each as ``(direction, c*)``, direction ``"lower"``, ``"higher"`` or
    ``"other"``, ``c*`` the estimate over the level the windows ran at (``None`` without an estimate)."""
    how, where = ending(run)
    if where is None:
        return []
    trace = run["gen_trace"]
    lines = []
    for entry in trace[trace.index(where) + 1 :]:
        estimate, level = entry.get("alpha_star"), entry.get("probe_lr")
        if estimate is not None and level:
            ratio = estimate / level
            lines.append(("lower" if ratio < 1.0 else "higher" if ratio > 1.0 else "other", ratio))
        else:
            reason = entry.get("fallback")
            lines.append(("lower" if reason in LOWER else "higher" if reason in HIGHER else "other", None))
    return lines


def level_response(points: list[tuple[float, float, float]]) -> tuple[float, float, float, float] | None:
    """The least-squares fit of ``log c*`` on ``[1, log(level / best lr), share of the run gone]`` over ``points``
    (``(level / best lr, share, c*)`` each): ``(response, its standard error, trend, residual sd)``; ``None`` with
    fewer than four lines or regressors that do not vary apart."""
    if len(points) < 4:
        return None
    import numpy as np

    x = np.array([[1.0, math.log(ratio), share] for ratio, share, _ in points])
    y = np.array([math.log(c) for _, _, c in points])
    gram = x.T @ x
    if np.linalg.matrix_rank(gram) < 3:
        return None
    coef = np.linalg.solve(gram, x.T @ y)
    residual = y - x @ coef
    variance = float(residual @ residual) / (len(y) - 3)
    error = math.sqrt(variance * float(np.linalg.inv(gram)[1, 1]))
    return float(coef[1]), error, float(coef[2]), math.sqrt(variance)


def noise_lines(run: dict) -> list[tuple[float, bool, bool, bool]]:
    """The fast-start lines of ``run`` tested against their batch's noise: ``(t, resolved at NOISE_Z, moved the level,
    ended the fast start)`` each."""
    _, where = ending(run)
    found, level = [], run.get("lr")
    for entry in run["gen_trace"]:
        t = entry.get("noise_t")
        if t is not None or entry.get("noise_chunks"):
            t = 0.0 if t is None else t  # a statistic that is not finite is recorded as None: no difference at all
            chunks = entry.get("noise_chunks")
            if chunks:
                resolved = chunks >= 3 and t > student_t_quantile(NOISE_Z, chunks - 1)
            else:  # a trace written before the chunks were recorded: the verdict its run acted on
                resolved = entry.get("fallback") != "below_noise"
            moved = level is not None and abs(entry["lr"] - level) > 1e-9 * level
            found.append((t, resolved, moved, entry is where))
        level = entry["lr"]
    return found


def departure(run: dict, reference: dict) -> tuple[int | None, str]:
    """The first step whose lr in ``run`` differs from ``reference``'s (relative 1e-9; ``None``: none does), and the
    phase of ``reference`` it fell in: ``"fast start"`` (at or before the line that ended its fast start),
    ``"settled"`` or ``"none"``."""
    for step, (a, b) in enumerate(zip(run["lr_trace"], reference["lr_trace"], strict=True), start=1):
        if abs(a - b) > 1e-9 * abs(b):
            _, where = ending(reference)
            return step, "fast start" if where is None or step <= where["step"] else "settled"
    return None, "none"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", nargs="+", default=None, help="results files (default: results/*.json)")
    parser.add_argument("--families", nargs="+", default=None, help="only these contender families")
    parser.add_argument("--ended", choices=ENDINGS, default=None, help="list the runs whose fast start ended so")
    parser.add_argument(
        "--against-best", action="store_true", help="each run's settled level against the best grid point's lr"
    )
    parser.add_argument(
        "--settled-lines", action="store_true", help="per task, which way the lines after the fast start pointed"
    )
    parser.add_argument(
        "--level-response", action="store_true", help="per task, how the settled lines' c* answers the level"
    )
    parser.add_argument(
        "--noise", action="store_true", help="per task, how well the fast start's lines were resolved (noise_t)"
    )
    parser.add_argument(
        "--departs-from", default=None, metavar="FAMILY", help="each run's first step off the same seed's FAMILY run"
    )
    opts = parser.parse_args(argv)
    if opts.departs_from:
        print_departures(opts)
        return
    counts: dict[tuple[str, str], Counter] = {}
    lines: dict[tuple[str, str], list] = {}
    responses: dict[tuple[str, str], list] = {}
    noise: dict[tuple[str, str], list] = {}
    if opts.against_best:
        print("| file | task | contender | seed | ended | settled level | x best lr | eval loss vs best |")
        print("|---|---|---|---|---|---|---|---|")
    for path in map(Path, opts.files or sorted((HERE / "results").glob("*.json"))):
        with open(path) as handle:
            data = json.load(handle)
        for task, block in data.get("tasks", {}).items():
            summary = summarize(block.get("runs", [])) if opts.against_best or opts.level_response else {}
            best = _best_grid(summary)
            for run in block.get("runs", []):
                if "gen_trace" not in run or (opts.families and run.get("family") not in opts.families):
                    continue
                how, where = ending(run)
                counts.setdefault((path.name, task), Counter())[how] += 1
                if run["role"] == "main":
                    lines.setdefault((path.name, task), []).extend(settled_lines(run))
                    if opts.noise:
                        noise.setdefault((path.name, task), []).append(noise_lines(run))
                if opts.level_response and best is not None and run["role"] == "main" and where is not None:
                    best_lr, trace = summary[best]["lr"], run["gen_trace"]
                    found = responses.setdefault((path.name, task), [])
                    for entry in trace[trace.index(where) + 1 :]:
                        estimate, level = entry.get("alpha_star"), entry.get("probe_lr")
                        if estimate and level and estimate > 0.0:
                            found.append((level / best_lr, entry["step"] / run["steps"], estimate / level))
                if opts.against_best and best is not None and run["role"] == "main":
                    reference = summary[best]
                    level = "-" if where is None else f"{where['lr']:.2g}"
                    times = "-" if where is None else f"{where['lr'] / reference['lr']:.2f}"
                    loss = (
                        "diverged"
                        if run["eval_loss"] is None
                        else f"{_pct(run['eval_loss'], reference['eval_loss']):+.1f}%"
                    )
                    print(f"| {path.name} | {task} | {run['contender']} | {run['seed']} | {how} | {level} | {times} "
                          f"| {loss} ({best}) |")  # fmt: skip
                if how == opts.ended:
                    at = "" if where is None else f" at step {where['step']}, lr {where['lr']:.3g}"
                    print(f"{path.name} {task} {run['contender']} seed {run['seed']} ({run['role']}){at}")
    if opts.settled_lines:
        print("| file | task | settled lines | called for lower | for higher | median c* |")
        print("|---|---|---|---|---|---|")
        for (name, task), found in lines.items():
            ratios = sorted(r for _, r in found if r is not None)
            median = "-" if not ratios else f"{statistics.median(ratios):.2f}"
            share = {
                d: f"{sum(1 for x, _ in found if x == d) / len(found):.2f}" if found else "-"
                for d in ("lower", "higher")
            }
            print(f"| {name} | {task} | {len(found)} | {share['lower']} | {share['higher']} | {median} |")
    elif opts.noise:
        print("| file | task | runs | fast-start lines | median t | resolved at 2 s.e. | moves on unresolved lines "
              "| ended on a resolved line |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|")
        for (name, task), runs in noise.items():
            found = [line for run in runs for line in run]
            if not found:
                continue
            moves = [line for line in found if line[2]]
            ends = [line for line in found if line[3]]
            median = statistics.median(t for t, *_ in found)
            resolved = sum(r for _, r, _, _ in found)
            blind = sum(not r for _, r, _, _ in moves)
            print(f"| {name} | {task} | {len(runs)} | {len(found)} | {median:.2f} | {resolved} of {len(found)} "
                  f"| {blind} of {len(moves)} | {sum(r for _, r, _, _ in ends)} of {len(runs)} |")  # fmt: skip
    elif opts.level_response:
        print("| file | task | settled lines | d log c* / d log level | trend over the run | line noise (sd) |")
        print("|---|---|---|---|---|---|")
        for (name, task), found in responses.items():
            fit = level_response(found)
            if fit is None:
                print(f"| {name} | {task} | {len(found)} | - | - | - |")
                continue
            response, error, trend, noise = fit
            print(f"| {name} | {task} | {len(found)} | {response:+.2f} ± {error:.2f} | {trend:+.2f} | {noise:.2f} |")
    elif opts.ended is None and not opts.against_best and not opts.noise:
        print("| file | task | " + " | ".join(ENDINGS) + " |")
        print("|---" * (len(ENDINGS) + 2) + "|")
        for (name, task), counter in counts.items():
            print(f"| {name} | {task} | " + " | ".join(str(counter[how]) for how in ENDINGS) + " |")


def print_departures(opts) -> None:
    """``--departs-from``: one table row per run of ``opts.families`` with a reference run to pair it with."""
    runs = []
    for path in map(Path, opts.files or sorted((HERE / "results").glob("*.json"))):
        with open(path) as handle:
            for task, block in json.load(handle).get("tasks", {}).items():
                runs.extend((task, run) for run in block.get("runs", []) if "gen_trace" in run and run["lr_trace"])
    references = {}
    for task, run in runs:
        if run["family"] == opts.departs_from and run["role"] == "main":
            references.setdefault((task, run["seed"], run["lr"], len(run["lr_trace"])), run)
    print(
        f"| task | seed | contender | first step off {opts.departs_from} | phase | eval loss | {opts.departs_from} |"
    )
    print("|---|---|---|---|---|---|---|")
    for task, run in runs:
        reference = references.get((task, run["seed"], run["lr"], len(run["lr_trace"])))
        if reference is None or run["role"] != "main" or (opts.families and run["family"] not in opts.families):
            continue
        if run["family"] == opts.departs_from:
            continue
        step, phase = departure(run, reference)
        print(f"| {task} | {run['seed']} | {run['contender']} | {'-' if step is None else step} | {phase} "
              f"| {run['eval_loss']:.4f} | {reference['eval_loss']:.4f} |")  # fmt: skip


if __name__ == "__main__":
    main()
