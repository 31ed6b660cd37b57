"""``gen_trace.jsonl``: one JSON object per GeN update, written by the main process into ``output_dir``.

The one place that names the file, builds a record and reads it back; the Trainer glue, the scripts, the benchmarks
and the tests all go through it. A record holds:

* ``step``: the optimizer step (1-based, as the Trainer counts) whose lr the update sets;
* ``lr``: group 0's lr after the update, used for that step; ``probe_lr``: the lr the measured line was taken at;
* ``alpha_star``, ``slope``, ``curvature``, ``loss``: the estimate (``None`` where undefined or not finite);
* ``mode`` (``"approx"``/``"exact"``), ``fallback`` (``None`` or the reason the estimate was not taken as is);
* ``interval``: the optimizer steps until the next recompute, as in force after this update (1 during the fast
  start), so a trace shows where GeN spent its forwards;
* approx mode: ``probe_batch`` (``"next"``/``"same"``/``"averages"``) and ``probe_losses``, ``[distance along the
  line, loss]``; with ``gen_jitter_cost`` (the default with the window lines; ``gen_fast_start_jitter`` alone: on the
  fast start's lines only), ``jitter_cost``: the charge per unit of the line, already added to ``probe_losses`` (the
  probe at ``c`` times ``probe_lr`` holds ``c * jitter_cost`` more than the loss measured there); with
  ``gen_undo_lost_windows``, a window taken back is the fallback ``"lost_window"``, with ``window_losses`` (the mean
  training loss of the window it went back to and of the window taken back) and ``window_loss_se`` (the standard error
  of their difference).
"""

from __future__ import annotations

import json
import math
import os

__all__ = ["TRACE_FILE", "append_record", "make_record", "read_trace", "restart_trace"]

TRACE_FILE = "gen_trace.jsonl"


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def make_record(
    *, step: int, lr: float, estimate, probe_lr: float, mode: str, fallback: str | None, interval: int, **extra
) -> dict:
    """A trace record from a ``LineEstimate`` (non-finite numbers become ``None``, also in ``probe_losses``)."""
    for key in ("probe_losses", "one_step_probe_losses"):
        if key in extra:
            extra[key] = [[a, _finite_or_none(v)] for a, v in extra[key]]
    if "one_step_alpha_star" in extra:
        extra["one_step_alpha_star"] = _finite_or_none(extra["one_step_alpha_star"])
    return {
        "step": step,
        "lr": lr,
        "alpha_star": _finite_or_none(estimate.alpha_star),
        "slope": _finite_or_none(estimate.slope),
        "curvature": _finite_or_none(estimate.curvature),
        "loss": _finite_or_none(estimate.loss0),
        "probe_lr": probe_lr,
        "mode": mode,
        "fallback": fallback,
        "interval": interval,
        **extra,
    }


def append_record(output_dir: str | os.PathLike, record: dict) -> None:
    with open(os.path.join(output_dir, TRACE_FILE), "a") as handle:
        handle.write(json.dumps(record) + "\n")


def read_trace(output_dir: str | os.PathLike) -> list[dict]:
    """The records of ``output_dir``'s trace, in order (empty when there is none)."""
    path = os.path.join(output_dir, TRACE_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def restart_trace(output_dir: str | os.PathLike, from_step: int) -> None:
    """Keep the records up to ``from_step`` (a run resumed there replaces the rest; 0: an empty trace)."""
    os.makedirs(output_dir, exist_ok=True)
    kept = [r for r in read_trace(output_dir) if r["step"] <= from_step]
    with open(os.path.join(output_dir, TRACE_FILE), "w") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in kept)
