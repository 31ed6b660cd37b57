"""Draw the lr trace of a run: lr, raw GeN estimate and training loss against step, fallbacks marked.

Usage:
    python scripts/plot_lr_trace.py OUTPUT_DIR [--out PATH]

Reads ``OUTPUT_DIR/gen_trace.jsonl`` (one record per GeN update) and the Trainer's log history
(``OUTPUT_DIR/trainer_state.json``, else the newest ``checkpoint-*/trainer_state.json``), and writes
``OUTPUT_DIR/lr_trace.png`` (or PATH). A run with a stock scheduler has no trace: its logged lr is drawn instead.
The training scripts call this at the end of every run; it also works on any earlier output_dir.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from hf_gen.trace import TRACE_FILE, read_trace

PICTURE_FILE = "lr_trace.png"


def read_log_history(output_dir: str | Path) -> list[dict]:
    """The Trainer's log history: ``trainer_state.json`` of the run, else of its newest checkpoint."""
    output_dir = Path(output_dir)
    candidates = [output_dir / "trainer_state.json"]
    checkpoints = sorted(output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]), reverse=True)
    candidates += [c / "trainer_state.json" for c in checkpoints if c.name.split("-")[-1].isdigit()]
    for path in candidates:
        if path.exists():
            return json.loads(path.read_text()).get("log_history", [])
    return []


def plot_lr_trace(output_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the picture and return its path. Raises ``FileNotFoundError`` if the folder has neither a trace nor a
    log history."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output_dir = Path(output_dir)
    trace = read_trace(output_dir)
    history = read_log_history(output_dir)
    if not trace and not history:
        raise FileNotFoundError(
            f"{output_dir}: no {TRACE_FILE} and no trainer_state.json; pass the output_dir of a training run"
        )
    out = Path(out) if out is not None else output_dir / PICTURE_FILE
    fig, (ax_lr, ax_loss) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, height_ratios=(3, 2))

    if trace:
        steps = [r["step"] for r in trace]
        ax_lr.step(steps, [r["lr"] for r in trace], where="post", color="C0", label="lr (GeN)")
        raw = [(r["step"], r["alpha_star"]) for r in trace if r["alpha_star"] is not None]
        if raw:
            ax_lr.scatter(*zip(*raw, strict=True), s=10, color="C1", alpha=0.7, label="raw estimate α*")
        falls = [(r["step"], r["lr"]) for r in trace if r["fallback"]]
        if falls:
            ax_lr.scatter(*zip(*falls, strict=True), marker="x", s=40, color="C3", zorder=3,
                          label=f"fallback ({len(falls)})")  # fmt: skip
        title = f"GeN lr trace: {len(trace)} updates, {len(falls)} fallbacks"
    else:
        logged = [(h["step"], h["learning_rate"]) for h in history if "learning_rate" in h]
        if logged:
            ax_lr.plot(*zip(*logged, strict=True), color="C0", label="lr (logged)")
        title = "lr schedule (no GeN trace)"
    ax_lr.set_yscale("log")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_title(title)
    ax_lr.grid(True, which="both", alpha=0.3)
    ax_lr.legend(loc="best", fontsize=8)

    losses = [(h["step"], h["loss"]) for h in history if "loss" in h]
    if losses:
        ax_loss.plot(*zip(*losses, strict=True), color="C2", label="training loss (logged)")
    evals = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    if evals:
        ax_loss.plot(*zip(*evals, strict=True), "o", color="C4", label="eval loss")
    ax_loss.set_xlabel("optimizer step")
    ax_loss.set_ylabel("loss")
    ax_loss.grid(True, alpha=0.3)
    if losses or evals:
        ax_loss.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", help="the output_dir of a training run")
    parser.add_argument("--out", default=None, help=f"where to write the picture (default OUTPUT_DIR/{PICTURE_FILE})")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.output_dir):
        print(f"error: {args.output_dir}: no such folder; pass the output_dir of a training run", file=sys.stderr)
        return 2
    try:
        path = plot_lr_trace(args.output_dir, args.out)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
