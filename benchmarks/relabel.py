"""Rename contender families in the results JSON when a default changes, so that every record keeps the settings its
family now names.

    python benchmarks/relabel.py gen-adamw=gen-adamw-cosine gen-adamw-nodecay=gen-adamw --drop gen-sgd

renames ``gen-adamw`` (the old default) to ``gen-adamw-cosine`` and, at the same time, ``gen-adamw-nodecay`` (the
same settings as the new default) to ``gen-adamw``; ``--drop`` removes the runs of families whose settings changed
with the default and have no family naming the old ones (they are rerun). Every renaming is simultaneous, so two
families can swap names. Each file that changes records the command in its ``commands`` (as ``quality.py`` does) so
that its report says what was done to it. Nothing trains here. Files: every ``results/*.json`` with quality.py's
layout, or those passed with ``--files``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def relabel(data: dict, renames: dict[str, str], drop: set[str]) -> bool:
    """Rename and drop runs in quality.py's ``data`` in place; return whether anything changed."""
    changed = False
    for block in data.get("tasks", {}).values():
        kept = []
        for run in block.get("runs", []):
            family = run.get("family")
            if family in drop:
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("renames", nargs="*", metavar="OLD=NEW", help="families to rename, all at once")
    parser.add_argument("--drop", nargs="+", default=[], metavar="FAMILY", help="families whose runs to remove")
    parser.add_argument("--files", nargs="+", default=None, help="results files (default: results/*.json)")
    opts = parser.parse_args(argv)
    renames = {}
    for item in opts.renames:
        old, sep, new = item.partition("=")
        if not sep or not old or not new:
            parser.error(f"{item!r}: pass OLD=NEW, e.g. gen-adamw=gen-adamw-cosine")
        renames[old] = new
    if not renames and not opts.drop:
        parser.error("nothing to do: pass OLD=NEW renames and/or --drop FAMILY")
    command = "python benchmarks/relabel.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    for path in map(Path, opts.files or sorted((HERE / "results").glob("*.json"))):
        with open(path) as handle:
            data = json.load(handle)
        if "tasks" not in data or "meta" not in data or not relabel(data, renames, set(opts.drop)):
            continue
        meta = data["meta"]
        meta["commands"] = [*meta.get("commands", [meta["command"]] if "command" in meta else []), command]
        with open(path, "w") as handle:
            json.dump(data, handle, indent=1)
        print(f"relabelled {path}")


if __name__ == "__main__":
    main()
