"""Along the displacement of the last K optimizer steps: does the loss's minimiser say whether the lr was too small or
too large over the run?

    python benchmarks/horizon_line.py --task gpt2 --lrs 3e-4 1e-3 3e-3 1e-2 --every 20 --lags 20 100

A diagnostic for a horizon-aware GeN estimate. GeN's one-step estimate is the greedy lr for the next step; on a
language model trained from scratch it is far below the lr that works over thousands of steps, and on a pretrained
fine-tune several times above it (RESULTS.md). Greedy lrs are known to be short-horizon biased (Wu, Ren, Liao and
Grosse, "Understanding Short-Horizon Bias in Stochastic Meta-Optimization", ICLR 2018): over one step, a smaller lr
lowers the noise that high-curvature directions carry, at the cost of progress along low-curvature ones that only
shows over many steps. A line through ``K`` steps' net displacement ``D = theta_t - theta_{t-K}`` sees what those
steps achieved together: their noise partly cancels in the sum, and their progress adds up.

For each lr: AdamW at that constant lr (no weight decay, gradient clipping at 1 as in the Trainer) for the task's
steps. Every ``--every`` steps and for each window length ``K`` in ``--lags``: the mean loss over ``--batches``
fresh training batches (drawn independently of the training order; dropout off) at ``theta_{t-K} + c D`` for ``c``
on a grid, and the grid's argmin ``c*``. ``c* > 1`` says that the same steps would have done better had they been
longer: the lr was too small for this window; ``c* < 1``, too large. Then the final eval loss at that constant lr,
to compare with where ``c*`` points.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402
from _tasks import build_task  # noqa: E402

C_GRID = [0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0]


def _mean_loss(model, batches) -> float:
    with torch.no_grad():
        return sum(float(model(**b).loss) for b in batches) / len(batches)


def eval_loss(task, model) -> float:
    rows = task.eval_dataset
    size = task.eval_batch_size
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(rows), size):
            chunk = [rows[i] for i in range(start, min(start + size, len(rows)))]
            total += float(model(**task.collator(chunk)).loss) * len(chunk)
            count += len(chunk)
    return total / count


def _curve(model, params, start, end, held) -> list[float]:
    curve = []
    for c in C_GRID:
        with torch.no_grad():
            for p, s, e in zip(params, start, end, strict=True):
                p.copy_(s + c * (e - s))
        curve.append(_mean_loss(model, held))
    return curve


def run(task, seed: int, lr: float, every: int, lags: list[int], n_batches: int) -> dict:
    """AdamW at a constant ``lr``; every ``every`` steps, for each lag ``K`` in ``lags`` that the run has reached, the
    loss curve along the displacement of the last ``K`` steps and its argmin: between the end points ("end"), and
    between the means of the weights over the ``every`` steps up to each end point ("mean")."""
    torch.manual_seed(seed)
    model = task.model(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    rows, size = task.train_rows(seed), task.batch_size
    probes = task.probe_batches(seed)
    first = [p.detach().clone() for p in params]
    snapshots = {0: {"end": first, "mean": first}}
    running = [torch.zeros_like(p) for p in params]
    points = []
    clock = time.perf_counter()
    for step in range(1, task.steps + 1):
        model.train()
        batch = task.collator([rows[i] for i in range((step - 1) * size, step * size)])
        optimizer.zero_grad()
        model(**batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        with torch.no_grad():
            for total, p in zip(running, params, strict=True):
                total.add_(p)
        if step % every:
            continue
        model.eval()
        here = {"end": [p.detach().clone() for p in params], "mean": [t / every for t in running]}
        for total in running:
            total.zero_()
        snapshots[step] = here
        held = [next(probes) for _ in range(n_batches)]
        for lag in lags:
            if step - lag not in snapshots:
                continue
            for kind in ("end", "mean"):
                curve = _curve(model, params, snapshots[step - lag][kind], here[kind], held)
                best = min(range(len(C_GRID)), key=lambda i: curve[i])
                points.append({"step": step, "lag": lag, "kind": kind, "curve": curve, "argmin": C_GRID[best]})
        with torch.no_grad():
            for p, e in zip(params, here["end"], strict=True):
                p.copy_(e)
        for old in [k for k in snapshots if k < step - max(lags)]:
            del snapshots[old]
    model.eval()
    final = eval_loss(task, model)
    with torch.no_grad():
        for p, m in zip(params, snapshots[max(snapshots)]["mean"], strict=True):
            p.copy_(m)
    final_mean = eval_loss(task, model)
    return {"seed": seed, "lr": lr, "points": points, "eval_loss": final, "eval_loss_last_mean": final_mean,
            "seconds": time.perf_counter() - clock}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="gpt2")
    parser.add_argument("--steps", type=int, default=None, help="default: the task's own")
    parser.add_argument("--lrs", nargs="+", type=float, required=True)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--every", type=int, default=None, help="steps between measurements (default steps / 10)")
    parser.add_argument("--lags", nargs="+", type=int, default=None,
                        help="window lengths K, multiples of --every (default: --every)")  # fmt: skip
    parser.add_argument("--batches", type=int, default=4, help="fresh training batches per measurement")
    parser.add_argument("--json", default=None)
    opts = parser.parse_args()
    torch.set_num_threads(1)
    from quality import FULL, SUITE  # the tasks' own step counts and builder options

    entry = {**FULL, **SUITE}[opts.task]
    steps = opts.steps or entry["steps"]
    task = build_task(opts.task, steps, **entry["options"])
    every = opts.every or max(1, steps // 10)
    lags = opts.lags or [every]
    if any(lag % every for lag in lags):
        parser.error(f"--lags: pass multiples of --every ({every})")
    results = []
    for seed in opts.seeds:
        for lr in opts.lrs:
            r = run(task, seed, lr, every, lags, opts.batches)
            results.append(r)
            print(f"{opts.task} seed {seed} lr {lr:g}: eval loss {r['eval_loss']:.4f} (last window's mean "
                  f"{r['eval_loss_last_mean']:.4f}), {r['seconds']:.0f} s", flush=True)  # fmt: skip
            for lag in lags:
                for kind in ("end", "mean"):
                    argmins = [p["argmin"] for p in r["points"] if p["lag"] == lag and p["kind"] == kind]
                    print(f"  K {lag}, {kind}: c* {argmins}; median {statistics.median(argmins):g}", flush=True)
    print(f"\n{opts.task}, {steps} steps: argmin c* of the loss along the last K steps' displacement\n")
    print("| lr | seed | final eval loss (last window's mean) | K | points | median c*, first half | second half |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        for lag in lags:
            for kind in ("end", "mean"):
                mine = [p for p in r["points"] if p["lag"] == lag and p["kind"] == kind]
                first = [p["argmin"] for p in mine if p["step"] <= steps // 2]
                second = [p["argmin"] for p in mine if p["step"] > steps // 2]
                med = lambda v: f"{statistics.median(v):g}" if v else "-"  # noqa: E731
                print(f"| {r['lr']:g} | {r['seed']} | {r['eval_loss']:.4f} ({r['eval_loss_last_mean']:.4f}) | {lag} | "
                      f"{kind} | {med(first)} | {med(second)} |")  # fmt: skip
    if opts.json:
        with open(opts.json, "w") as handle:
            json.dump({"options": vars(opts), "c_grid": C_GRID, "steps": steps, "runs": results}, handle)


if __name__ == "__main__":
    main()
