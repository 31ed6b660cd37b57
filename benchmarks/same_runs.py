"""Whether two quality runs are the same runs, bit for bit: the check that a change meant to leave training alone
(a refactor, a removed option) did.

Run ``quality.py`` twice with the same arguments, once on the code before the change and once after (``git worktree
add ../before <commit>`` gives the code before), then compare the two results files::

    python benchmarks/same_runs.py results/prune_before.json results/prune_after.json

Every run of the first file (task, contender, seed) must be in the second, with the same eval loss, task metric,
mean training loss, step count and the lr of every step (``lr_trace``), compared exactly: on one machine and thread
count a CPU run is deterministic, so any difference is a change in what the code does. The exit status is 0 when
every run matches, 1 otherwise, so a script can gate on it.
"""

from __future__ import annotations

import argparse
import json
import sys

FIELDS = ("eval_loss", "metric", "train_loss", "steps", "lr_trace")


def runs(path: str) -> dict:
    """``(task, contender, seed) -> run`` for every main-comparison run of a ``quality.py`` results file."""
    with open(path) as handle:
        data = json.load(handle)
    return {
        (task, run["contender"], run["seed"]): run for task, entry in data["tasks"].items() for run in entry["runs"]
    }


def differences(before: dict, after: dict) -> list[tuple[tuple, list[str]]]:
    """For each run of ``before``: the fields of :data:`FIELDS` in which ``after``'s run differs (``["missing"]``
    when ``after`` has no such run)."""
    out = []
    for key, run in before.items():
        other = after.get(key)
        out.append((key, ["missing"] if other is None else [f for f in FIELDS if run.get(f) != other.get(f)]))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", help="quality.py results file of the code before the change")
    parser.add_argument("after", help="the same command's results file after it")
    args = parser.parse_args(argv)
    before, after = runs(args.before), runs(args.after)
    found = differences(before, after)
    print("| task | contender | seed | steps | distinct lrs | eval loss | same |")
    print("|---|---|---|---|---|---|---|")
    for (task, contender, seed), diff in found:
        run = before[(task, contender, seed)]
        verdict = "yes" if not diff else "**no**: " + ", ".join(diff)
        print(f"| {task} | {contender} | {seed} | {run['steps']} | {len(set(run['lr_trace']))} | "
              f"{run['eval_loss']:.6f} | {verdict} |")  # fmt: skip
    same = sum(not diff for _, diff in found)
    print(f"\n{same} of {len(found)} runs the same in {', '.join(FIELDS)}")
    return 0 if same == len(found) else 1


if __name__ == "__main__":
    sys.exit(main())
