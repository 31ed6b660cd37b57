"""Rename contender families in the results JSON when a default changes, so that every record keeps the settings its
family now names.

    python benchmarks/relabel.py gen-adamw=gen-adamw-cosine gen-adamw-nodecay=gen-adamw --drop gen-sgd

renames ``gen-adamw`` (the old default) to ``gen-adamw-cosine`` and, at the same time, ``gen-adamw-nodecay`` (the
same settings as the new default) to ``gen-adamw``; ``--drop`` removes the runs of families whose settings changed
with the default and have no family naming the old ones (they are rerun). A drop may be narrowed to one task and some
seeds, and name a family or one contender (``FAMILY[:TASK[:SEED,...]]``):

    python benchmarks/relabel.py --drop gen-adamw:plays:1,2,4 gen-adamw@0.01:diabetes

removes the default's plays runs of seeds 1, 2 and 4 (main and robustness) and the diabetes runs of the contender
``gen-adamw@0.01``, for ``quality.py --resume`` to run again after a change that altered only them. Every renaming
is simultaneous, so two families can swap names. When an option that ran across the suite into a file of its own
becomes the default, its runs join the tasks' files:

    python benchmarks/relabel.py gen-adamw=gen-adamw-uncharged gen-adamw-jitter-start=gen-adamw
    R=benchmarks/results
    python benchmarks/relabel.py --copy gen-adamw --copy-from $R/jitter_start.json --files $R/quality.json

copies the (renamed) family's runs of every task of the ``--copy-from`` file into each of ``--files`` that holds the
same task with the same configuration (a different one is refused and nothing is written), leaving out runs already
there (the same contender, role and seed). Each file that changes records the command in its ``commands`` (as
``quality.py`` does) so that its report says what was done to it. Nothing trains here. Files: every
``results/*.json`` with quality.py's layout (and perturbation.py's, where only renames apply), or those passed with
``--files``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


class Drop:
    """One ``--drop`` item: ``FAMILY[:TASK[:SEED,...]]``, where ``FAMILY`` may also be a contender (``name@lr``)."""

    def __init__(self, item: str) -> None:
        name, _, rest = item.partition(":")
        task, _, seeds = rest.partition(":")
        if not name:
            raise ValueError(f"{item!r}: pass FAMILY, FAMILY:TASK or FAMILY:TASK:SEED,SEED (e.g. gen-adamw:plays:1,2)")
        try:
            self.seeds = {int(s) for s in seeds.split(",")} if seeds else None
        except ValueError:
            raise ValueError(
                f"{item!r}: seeds are whole numbers separated by commas, e.g. gen-adamw:plays:1,2"
            ) from None
        self.name, self.task = name, task or None

    def matches(self, task: str, run: dict) -> bool:
        key = run.get("contender") if "@" in self.name else run.get("family")
        return (
            key == self.name
            and (self.task is None or self.task == task)
            and (self.seeds is None or run.get("seed") in self.seeds)
        )


def relabel(data: dict, renames: dict[str, str], drop: set[str] | list[Drop]) -> bool:
    """Rename and drop runs in quality.py's ``data`` in place; return whether anything changed. ``drop``: family names
    or :class:`Drop` items."""
    drops = [item if isinstance(item, Drop) else Drop(item) for item in drop]
    changed = False
    for task, block in data.get("tasks", {}).items():
        kept = []
        for run in block.get("runs", []):
            family = run.get("family")
            if any(item.matches(task, run) for item in drops):
                changed = True
                continue
            if family in renames:
                new = renames[family]
                run["family"] = new
                run["contender"] = new + run["contender"][len(family) :]
                changed = True
            kept.append(run)
        block["runs"] = kept
    return changed


def _renamed(contender: str, renames: dict[str, str]) -> str:
    family, at, lr = contender.partition("@")
    return renames.get(family, family) + at + lr


def relabel_perturbation(data: dict, renames: dict[str, str]) -> bool:
    """Rename families in perturbation.py's ``data`` (its ``records``, ``summary`` and ``meta.against_best``) in
    place; return whether anything changed. Its runs are not dropped: a rerun rewrites the whole file."""
    changed = False
    for entry in [*data.get("records", []), *data.get("summary", [])]:
        new = _renamed(entry["contender"], renames)
        changed |= new != entry["contender"]
        entry["contender"] = new
    for entry in data.get("meta", {}).get("against_best", []):
        new = _renamed(entry["gen"], renames)
        changed |= new != entry["gen"]
        entry["gen"] = new
    return changed


def same_task(one: dict, other: dict) -> bool:
    """Two task blocks' configurations agree, apart from how many seeds the command that wrote each asked for."""
    return {k: v for k, v in one.items() if k != "seeds"} == {k: v for k, v in other.items() if k != "seeds"}


def copy_runs(data: dict, source: dict, family: str) -> int:
    """Append ``family``'s runs of ``source`` (quality.py's layout) to ``data``'s blocks of the same tasks, leaving out
    the runs already there (same contender, role and seed); return how many were copied. A task whose configuration
    differs between the two is refused: its runs would not be comparable with the file's."""
    copied = 0
    for task, block in source.get("tasks", {}).items():
        if task not in data.get("tasks", {}):
            continue
        target = data["tasks"][task]
        if not same_task(target["config"], block["config"]):
            raise ValueError(
                f"task {task!r} is configured differently in the two files (steps, data or grid): pass only files "
                "whose runs of that task used the same configuration"
            )
        have = {(r["contender"], r.get("role", "main"), r["seed"]) for r in target["runs"]}
        for run in block["runs"]:
            key = (run["contender"], run.get("role", "main"), run["seed"])
            if run["family"] == family and key not in have:
                target["runs"].append(run)
                have.add(key)
                copied += 1
    return copied


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("renames", nargs="*", metavar="OLD=NEW", help="families to rename, all at once")
    parser.add_argument(
        "--drop", nargs="+", default=[], metavar="FAMILY[:TASK[:SEEDS]]",
        help="runs to remove: a family's or a contender's (name@lr), on every task or one, of every seed or some",
    )  # fmt: skip
    parser.add_argument("--files", nargs="+", default=None, help="results files (default: results/*.json)")
    parser.add_argument("--copy", default=None, metavar="FAMILY", help="copy this family's runs from --copy-from")
    parser.add_argument("--copy-from", default=None, metavar="FILE", help="the results file to copy runs from")
    opts = parser.parse_args(argv)
    if (opts.copy is None) != (opts.copy_from is None):
        parser.error("pass --copy FAMILY and --copy-from FILE together")
    if opts.copy is not None and (opts.files is None or opts.renames or opts.drop):
        parser.error("--copy takes the files to copy into as --files (no renames or drops in the same command)")
    if opts.copy is not None:
        with open(opts.copy_from) as handle:
            source = json.load(handle)
    renames = {}
    for item in opts.renames:
        old, sep, new = item.partition("=")
        if not sep or not old or not new:
            parser.error(f"{item!r}: pass OLD=NEW, e.g. gen-adamw=gen-adamw-cosine")
        renames[old] = new
    if not renames and not opts.drop and opts.copy is None:
        parser.error("nothing to do: pass OLD=NEW renames, --drop FAMILY or --copy FAMILY --copy-from FILE")
    try:
        drops = [Drop(item) for item in opts.drop]
    except ValueError as error:
        parser.error(str(error))
    command = "python benchmarks/relabel.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    changed = []  # every file is worked out before any is written, so a refusal leaves them all as they were
    for path in map(Path, opts.files or sorted((HERE / "results").glob("*.json"))):
        with open(path) as handle:
            data = json.load(handle)
        if opts.copy is not None:
            try:
                copied = copy_runs(data, source, opts.copy) if "tasks" in data and "meta" in data else 0
            except ValueError as error:
                parser.error(f"{path}: {error}")
            if not copied:
                continue
        elif "records" in data and "meta" in data:  # perturbation.py's layout: renames only
            if not relabel_perturbation(data, renames):
                continue
        elif "tasks" not in data or "meta" not in data or not relabel(data, renames, drops):
            continue
        meta = data["meta"]
        meta["commands"] = [*meta.get("commands", [meta["command"]] if "command" in meta else []), command]
        changed.append((path, data))
    for path, data in changed:
        with open(path, "w") as handle:
            json.dump(data, handle, indent=1)
        print(f"relabelled {path}")


if __name__ == "__main__":
    main()
