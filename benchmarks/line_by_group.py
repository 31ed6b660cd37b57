"""Along Adam's update direction on a fine-tune with a new head: where is the loss lowest when only the new head
moves, only the pretrained body moves, or both?

    python benchmarks/line_by_group.py --task plays --seeds 0 1 2 --warm 0 4

A diagnostic for why GeN's one-step estimate is several times the lr that works on pretrained fine-tunes: if the
body alone wanted a far smaller step than the head, one lr per param group would be the lever. For each seed:
``--warm`` AdamW steps at ``--warm_lr`` (0: the first step), then the next step's direction ``d`` (Adam's update per
unit lr).
On that step's own batch ("same") and on the next batch ("held"), the loss ``L(theta - a d_M)`` is evaluated on a
grid of ``a`` (1e-5 to 0.056, quarter decades), where ``d_M`` keeps the parameters of one group (the new head: the
parameters the checkpoint did not have; the body: the rest; all). Dropout off (eval mode); CPU, one thread.
Prints one markdown row per seed, warm-up and group: the grid's argmin and the loss there.
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402
from _tasks import adam_line, build_task  # noqa: E402

GRID = [10 ** (k / 4) for k in range(-20, -4)]
HEAD_PREFIXES = ("classifier", "score")  # the classification heads transformers adds to a pretrained encoder


def line_minima(task, seed: int, warm: int, warm_lr: float) -> list[dict]:
    line = adam_line(task, seed, warm, warm_lr)
    names = set(line.params)
    head = {name for name in names if name.startswith(HEAD_PREFIXES)}
    out = []
    for group, keep in (("all", names), ("head", head), ("body", names - head)):
        row = {"seed": seed, "warm": warm, "group": group, "head": sorted(head)}
        for which, batch in (("same", line.batches[warm]), ("held", line.batches[warm + 1])):
            curve = []
            for a in [0.0, *GRID]:
                line.move_to(a, keep)
                with torch.no_grad():
                    curve.append((a, float(line.model(**batch).loss)))
            best = min(curve, key=lambda point: point[1])
            row[which] = {"loss0": curve[0][1], "argmin": best[0], "min": best[1], "curve": curve}
        out.append(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="plays", choices=["plays", "genres", "minilm"])
    parser.add_argument("--steps", type=int, default=150, help="the task's step count (sets its data order)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--warm", nargs="+", type=int, default=[0, 4])
    parser.add_argument("--warm_lr", type=float, default=3e-4, help="the best grid point's peak lr on plays")
    parser.add_argument("--json", default=None)
    opts = parser.parse_args()
    torch.set_num_threads(1)
    task = build_task(opts.task, opts.steps)
    rows = [row for warm in opts.warm for seed in opts.seeds for row in line_minima(task, seed, warm, opts.warm_lr)]
    print(
        f"\n{opts.task}: argmin of the loss over a (grid 1e-5 to 0.056) along Adam's direction, by the group moved\n"
    )
    print(
        "| seed | AdamW steps before | group | same batch: argmin (loss at 0 -> there) | next batch: argmin (loss) |"
    )
    print("|---|---|---|---|---|")
    for r in rows:
        same, held = r["same"], r["held"]
        print(f"| {r['seed']} | {r['warm']} | {r['group']} | {same['argmin']:.2g} ({same['loss0']:.3f} -> "
              f"{same['min']:.3f}) | {held['argmin']:.2g} ({held['loss0']:.3f} -> {held['min']:.3f}) |")  # fmt: skip
    print(f"\nhead parameters: {', '.join(rows[0]['head'])}")
    if opts.json:
        with open(opts.json, "w") as handle:
            json.dump({"options": vars(opts), "rows": rows}, handle)


if __name__ == "__main__":
    main()
