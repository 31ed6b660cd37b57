"""How each traced GeN run's fast start ended, read from the results JSON: to find the runs a change to the fast start
can alter before rerunning anything.

    python benchmarks/fast_start_ends.py                          # counts per task, every traced run
    python benchmarks/fast_start_ends.py --ended unmeasured-cap   # list the runs that ended that way

The fast start ends at the first measurement after which the scheduler's interval is no longer 1 (the trace's
``interval``). With the default window lines it ends one of three ways:

* ``inside``: the window line's estimate landed inside the change bound (``[level / c, level * c]``, ``c`` the run's
  ``gen_max_change``);
* ``measured-cap``: the climb was held at the cap of the last step's line, which had a minimiser of its own;
* ``unmeasured-cap``: held at the cap of a last-step line with no minimiser. Since the fast start settles only on a
  measured cap, no run of the current code ends this way; runs made before that change did, and a rerun may differ.

``never``: the run ended during its fast start. ``other``: the fast start ended on a line of another kind (one-step
lines: ``gen_fast_start_lines="next"`` or ``gen_probe_batch="next"``/``"same"``). Runs without a ``gen_trace``
(some results files do not keep them) are not read. Nothing trains here.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _contenders import GEN_VARIANTS, gen_settings  # noqa: E402

from hf_gen.args import GeNTrainingArguments  # noqa: E402

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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", nargs="+", default=None, help="results files (default: results/*.json)")
    parser.add_argument("--families", nargs="+", default=None, help="only these contender families")
    parser.add_argument("--ended", choices=ENDINGS, default=None, help="list the runs whose fast start ended so")
    opts = parser.parse_args(argv)
    counts: dict[tuple[str, str], Counter] = {}
    for path in map(Path, opts.files or sorted((HERE / "results").glob("*.json"))):
        with open(path) as handle:
            data = json.load(handle)
        for task, block in data.get("tasks", {}).items():
            for run in block.get("runs", []):
                if "gen_trace" not in run or (opts.families and run.get("family") not in opts.families):
                    continue
                how, where = ending(run)
                counts.setdefault((path.name, task), Counter())[how] += 1
                if how == opts.ended:
                    at = "" if where is None else f" at step {where['step']}, lr {where['lr']:.3g}"
                    print(f"{path.name} {task} {run['contender']} seed {run['seed']} ({run['role']}){at}")
    if opts.ended is None:
        print("| file | task | " + " | ".join(ENDINGS) + " |")
        print("|---" * (len(ENDINGS) + 2) + "|")
        for (name, task), counter in counts.items():
            print(f"| {name} | {task} | " + " | ".join(str(counter[how]) for how in ENDINGS) + " |")


if __name__ == "__main__":
    main()
