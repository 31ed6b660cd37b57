"""How far one optimizer step moves the weights, relative to their size, at each task's best fixed lr: the numbers a
trust region in relative weight change would have to be set from.

    python benchmarks/relative_step.py --runs digits=adamw-linear@0.03 minilm=adamw-linear@3e-4

A trust region in relative weight change caps ``||theta_t - theta_(t-1)|| / ||theta_(t-1)||`` (the trainable weights
as one vector, or each tensor apart). It is scale-free in the weights, but it needs a radius. This script measures,
for each run given, the ratio at every optimizer step (after the Trainer's step, clipping and scheduler included),
over all trainable weights and per tensor (the median over tensors), and how far the run ends from its start,
``||theta_T - theta_0|| / ||theta_0||``. Tensors whose start is zero (LoRA's B) have no relative change; they are
counted and left out of the per-tensor median. Runs are the contenders of ``benchmarks/quality.py`` (``family@lr``),
on their tasks, seed 0 unless ``--seed``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from transformers import TrainerCallback

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _contenders import FAMILIES, TRAINER_DEFAULT_LR, Contender, _make_trainer  # noqa: E402
from _tasks import build_task  # noqa: E402
from quality import FULL, SUITE  # noqa: E402


def relative_change(before: list[torch.Tensor], after: list[torch.Tensor]) -> tuple[float, list[float | None]]:
    """``||after - before|| / ||before||`` over all tensors as one vector, and per tensor (``None`` where the tensor
    was zero before)."""
    norms = torch.stack(
        [torch.linalg.vector_norm((a - b).double()) for a, b in zip(after, before, strict=True)]
        + [torch.linalg.vector_norm(b.double()) for b in before]
    ).tolist()  # one read from the device per call, not one per tensor
    diffs, sizes = norms[: len(before)], norms[len(before) :]
    whole = sum(d * d for d in diffs) ** 0.5 / sum(s * s for s in sizes) ** 0.5
    return whole, [d / s if s > 0.0 else None for d, s in zip(diffs, sizes, strict=True)]


class StepSize(TrainerCallback):
    """Records each optimizer step's relative change of the trainable weights, and the drift from the start."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.start = [p.detach().clone() for p in self.params]
        self.before: list[torch.Tensor] | None = None
        self.whole: list[float] = []
        self.per_tensor: list[float] = []  # the median over tensors, per step
        self.zero_tensors = relative_change(self.start, self.start)[1].count(None)  # tensors that start at zero

    def on_step_begin(self, args, state, control, **kwargs):
        self.before = [p.detach().clone() for p in self.params]

    def on_step_end(self, args, state, control, **kwargs):
        whole, per = relative_change(self.before, [p.detach() for p in self.params])
        self.whole.append(whole)
        self.per_tensor.append(statistics.median([r for r in per if r is not None]))

    def drift(self) -> float:
        return relative_change(self.start, [p.detach() for p in self.params])[0]


def parse_run(text: str) -> tuple[str, Contender]:
    """``TASK=FAMILY@LR`` (or ``TASK=FAMILY`` for a GeN family, from the Trainer's default lr) as a task name and a
    contender; a clear error for anything else."""
    task, _, contender = text.partition("=")
    family, _, lr = contender.partition("@")
    usage = f"--runs takes TASK=FAMILY@LR (e.g. digits=adamw-linear@0.03) or TASK=gen-adamw, got {text!r}"
    if not task or not family:
        raise SystemExit(usage)
    if task not in {**FULL, **SUITE}:
        raise SystemExit(f"{usage}: unknown task {task!r}; known: {', '.join({**FULL, **SUITE})}")
    if family not in FAMILIES:
        raise SystemExit(f"{usage}: unknown family {family!r}; known: {', '.join(FAMILIES)}")
    try:
        rate = float(lr) if lr else (TRAINER_DEFAULT_LR if family.startswith("gen") else None)
    except ValueError:
        raise SystemExit(f"{usage}: the lr {lr!r} is not a number") from None
    return task, Contender(family, rate)


def measure(task_name: str, contender: Contender, seed: int, workdir: str, steps: int | None = None) -> dict:
    plan = {**FULL, **SUITE}[task_name]
    task = build_task(task_name, steps or plan["steps"], **plan["options"])
    model = task.model(seed)
    trainer, _ = _make_trainer(contender, task, seed, os.path.join(workdir, task_name, contender.name), model)
    sizes = StepSize(model)
    trainer.add_callback(sizes)
    trainer.train()
    first = sizes.whole[:10]
    return {
        "task": task_name,
        "contender": contender.name,
        "seed": seed,
        "steps": len(sizes.whole),
        "median_step": statistics.median(sizes.whole),
        "median_step_first10": statistics.median(first),
        "median_step_per_tensor": statistics.median(sizes.per_tensor),
        "drift": sizes.drift(),
        "zero_tensors": sizes.zero_tensors,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", required=True, help="TASK=FAMILY@LR, e.g. minilm=adamw-linear@3e-4")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", nargs="+", default=[], metavar="TASK=N", help="override a task's step count")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="write the rows here")
    opts = parser.parse_args(argv)
    torch.set_num_threads(opts.threads)
    steps = {k: int(v) for k, _, v in (item.partition("=") for item in opts.steps)}
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for text in opts.runs:
            task, contender = parse_run(text)
            rows.append(measure(task, contender, opts.seed, workdir, steps.get(task)))
            row = rows[-1]
            print(
                f"{row['task']:12s} {row['contender']:24s} step/size: median {row['median_step']:.2e} "
                f"(first 10 {row['median_step_first10']:.2e}; per tensor {row['median_step_per_tensor']:.2e}), "
                f"end drift {row['drift']:.3f}, zero tensors {row['zero_tensors']}",
                flush=True,
            )
    print("\n| task | run | median step / size | first 10 steps | per tensor (median) | drift at the end |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['task']} | {row['contender']} | {row['median_step']:.2e} | {row['median_step_first10']:.2e} | "
            f"{row['median_step_per_tensor']:.2e} | {row['drift']:.3f} |"
        )
    if opts.json:
        Path(opts.json).write_text(json.dumps({"rows": rows, "argv": sys.argv[1:]}, indent=1) + "\n")


if __name__ == "__main__":
    main()
