"""How finely a bf16-autocast forward resolves a change of the loss along Adam's update direction.

    python benchmarks/precision_noise.py --tasks gpt2 digits --seeds 0 1

For each task and seed: a few AdamW steps in float32 (``--warm`` at ``--warm_lr``), then the next step's direction
``d`` (Adam's update per unit lr); on a held-out batch, the loss change ``L(theta - a d) - L(theta)`` for ``a`` from
1e-6 to 1e-2, computed in float32 (the reference) and under bfloat16 autocast. The error of the bf16 change is set
against ``u |L| / sqrt(N)`` (``u = 2**-8``, ``N`` the loss's terms: label tokens or examples), the resolution GeN's
precision guard assumes (``GeNMixin._gen_precision``), and against ``u |L|``. Dropout off (eval mode), CPU, one
thread. Prints a markdown table per task and seed and a summary row.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402
from _tasks import adam_line, build_task  # noqa: E402

STEPS = {"digits": 300, "diabetes": 300, "gpt2": 200, "minilm": 40}
U = 2.0**-8


def terms(batch) -> int:
    """The loss's terms: label tokens after the causal shift for a language model, else examples."""
    labels = batch["labels"]
    if labels.dim() == 2:
        return int((labels[:, 1:] != -100).sum())
    return int(labels.shape[0])


def measure(task, seed: int, warm: int, warm_lr: float) -> dict:
    line = adam_line(task, seed, warm, warm_lr)
    held = line.batches[warm + 1]

    def loss(a: float, bf16: bool) -> float:
        line.move_to(a)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return float(line.model(**held).loss)

    base32, base16 = loss(0.0, False), loss(0.0, True)
    points = []
    for k in range(-24, -7):
        a = 10 ** (k / 4)
        change32, change16 = loss(a, False) - base32, loss(a, True) - base16
        points.append({"a": a, "change": change32, "error": change16 - change32})
    n = terms(held)
    return {"seed": seed, "loss": base32, "terms": n, "bound": U * abs(base32) / math.sqrt(n),
            "coarse": U * abs(base32), "points": points}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["gpt2", "digits"], choices=sorted(STEPS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--warm", type=int, default=20, help="AdamW steps before the measured direction")
    parser.add_argument("--warm_lr", type=float, default=1e-3)
    opts = parser.parse_args()
    torch.set_num_threads(1)
    print("| task | seed | loss | N terms | u L / sqrt(N) | u L | median / max bf16 error | "
          "max error / (u L / sqrt(N)) | smallest a whose change exceeds u L / sqrt(N) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for name in opts.tasks:
        task = build_task(name, STEPS[name])
        for seed in opts.seeds:
            r = measure(task, seed, opts.warm, opts.warm_lr)
            errors = [abs(p["error"]) for p in r["points"]]
            resolved = next((p["a"] for p in r["points"] if abs(p["change"]) > r["bound"]), None)
            print(f"| {name} | {seed} | {r['loss']:.4f} | {r['terms']} | {r['bound']:.1e} | {r['coarse']:.1e} | "
                  f"{statistics.median(errors):.1e} / {max(errors):.1e} | {max(errors) / r['bound']:.2f} | "
                  f"{resolved:.1e} |")  # fmt: skip


if __name__ == "__main__":
    main()
