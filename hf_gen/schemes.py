"""Where GeN measures its lines: one class per probe scheme, and the pieces they keep between steps.

The Trainer glue (:mod:`hf_gen.trainer`) keeps one :class:`StepRecord` per optimizer step and calls the scheme it
was built with around each optimizer step (``before_step`` in the optimizer's pre-hook, ``after_step`` in its
post-hook, ``after_any_step`` after every step); the scheme measures lines through the glue's ``g(a)`` (the
``trainer._gen_*`` methods) and hands each estimate to the scheduler:

* :class:`Averages` (``gen_probe_batch="averages"``, the default in approx mode): the line through two windows' mean
  weights, measured on the batch after them (:class:`OpenLine` when it is measured on several; :class:`Witness`, the
  gradients' slope along it, with ``gen_fast_start_confirm``).
* :class:`NextBatch` (``"next"``): the step's line, measured on the next step's batch (out of sample).
* :class:`SameBatch` (``"same"``, and exact mode): the step's line on its own batch, after the step.

Each scheme says what a checkpoint keeps (``state``/``load_state``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from .core import (
    LineEstimate,
    LineResult,
    charge_jitter,
    cut_back,
    estimate_from_curvature,
    jitter_cost,
    line_pace,
    lost_ground,
    made_progress,
    measure_line,
    no_descent_seen,
    probes_resolved,
)
from .line import (
    LineSnapshot,
    Pace,
    RngState,
    WindowLosses,
    WindowMeans,
    directional_dot,
    laid_out_like,
    local_copies,
)
from .scheduler import GeNEstimateError, line_gamma
from .support import check_linear_optimizer

if TYPE_CHECKING:
    from .trainer import GeNMixin

__all__ = ["Averages", "NextBatch", "OpenLine", "SameBatch", "StepRecord", "Witness"]


@dataclass
class StepRecord:
    """What GeN keeps of one optimizer step: from its first micro-batch to the optimizer's post-step hook.

    A step the optimizer skips leaves its record behind complete, and the next step starts a new one.
    """

    measures: bool  # whether this step's batch measures a line (its own, or the previous step's)
    batch: list[tuple[dict, RngState]] = field(default_factory=list)
    num_items: object = None
    loss: torch.Tensor | None = None  # the summed training losses: g at the live weights, on this batch
    grad_norm: object = None  # before clipping
    complete: bool = False  # its last micro-batch has run
    snapshot: LineSnapshot | None = None  # same batch: the copy the pre-hook took


class SameBatch:
    """The step's line measured on its own batch, after the step: probes (approx) or a Hessian-vector product."""

    name = "same"

    def measures(self, trainer: GeNMixin) -> bool:
        return trainer.lr_scheduler.is_due(trainer.lr_scheduler.last_epoch)

    def wants_hook(self, trainer: GeNMixin) -> bool:
        """Whether the pre-step hook has work on a step whose batch measures nothing: never, here."""
        return False

    def state(self) -> None:
        """Nothing outlives an optimizer step here: a checkpoint carries no line."""
        return None

    def load_state(self, trainer: GeNMixin, saved: dict) -> None:
        """A line saved by a next-batch run is of no use to same-batch probes: the resumed run measures its own."""

    def after_any_step(self, trainer: GeNMixin, optimizer, record: StepRecord | None) -> None:
        """After every optimizer step (measuring or not): nothing to do here."""

    def before_step(self, trainer: GeNMixin, record: StepRecord, optimizer) -> None:
        if record.measures and record.batch:
            record.snapshot = trainer._gen_snapshot(optimizer)

    def after_step(self, trainer: GeNMixin, record: StepRecord) -> None:
        snapshot = record.snapshot
        if snapshot is None:
            return
        scheduler, args, a0 = trainer.lr_scheduler, trainer.args, snapshot.a0
        slope, loss = trainer._gen_known(record, snapshot, a0)
        extra: dict = {}
        if args.gen_mode == "exact":
            step_vector = snapshot.return_to_start()
            curvature = trainer._gen_reduce(trainer._gen_curvature(record, snapshot.params, step_vector)) / a0**2
            slope, curvature, loss = torch.stack([slope, curvature, loss]).tolist()
            result = LineResult(estimate_from_curvature(slope, curvature, loss0=loss), None, None, ())
        else:
            offsets = list(args.gen_probe_offsets)
            if offsets != [1.0]:
                snapshot.keep_theta1()
            one_probe = offsets == [1.0] and args.gen_use_slope
            result = measure_line(
                trainer._gen_line(record, snapshot),
                [offset * a0 for offset in offsets],
                loss=loss,
                slope=slope if args.gen_use_slope else None,
                search=scheduler.search_rules(args.gen_search_probes) if one_probe else None,
                precision=trainer._gen_precision(record),
            )
            extra = {"probe_batch": self.name, "probe_losses": [list(p) for p in result.probes]}
        try:
            new_lr = scheduler.apply_estimate(
                result.estimate, scheduler.last_epoch, at=result.at, ceiling=result.ceiling
            )
        except GeNEstimateError:
            snapshot.finish(a0)  # gen_fallback="error": leave the weights where the optimizer's step put them
            raise
        snapshot.finish(new_lr)
        trainer._gen_write_trace(result.estimate, new_lr, a0, args.gen_mode, extra)


class NextBatch:
    """The step's line measured on the next step's batch, before that step: out of sample.

    The line of step ``t`` (``pending``: the copy of the weights before it, and where the live weights are on it) is
    measured in step ``t + 1``'s pre-hook. There the loss of the new batch and its slope at the live weights come
    from that step's training forward and backward, and one forward at the copy gives ``g(0)``; the estimate sets
    the lr of step ``t + 1``.
    """

    name = "next"

    def __init__(self) -> None:
        self.pending: tuple[LineSnapshot, float] | None = None

    def measures(self, trainer: GeNMixin) -> bool:
        # The first step is also recorded: its own batch can veto a starting lr that overshoots.
        first = (
            trainer.lr_scheduler.last_epoch == trainer.lr_scheduler.first_step and trainer.args.gen_search_probes > 0
        )
        return self.pending is not None or first

    def before_step(self, trainer: GeNMixin, record: StepRecord, optimizer) -> None:
        scheduler = trainer.lr_scheduler
        if self.pending is not None and record.measures and record.batch:
            self.measure(trainer, record)  # sets this step's lr
        if self._copy_due(scheduler):
            snapshot = trainer._gen_snapshot(optimizer)
            self.pending = (snapshot, snapshot.a0)

    @staticmethod
    def _copy_due(scheduler) -> bool:
        """Whether the step about to be taken needs a copy before it: the next step recomputes from its line, and
        the step is GeN's (a warmup's steps have no line)."""
        return scheduler.is_due(scheduler.last_epoch + 1) and scheduler.last_epoch >= scheduler.first_step

    def wants_hook(self, trainer: GeNMixin) -> bool:
        """Whether the pre-step hook has work on a step whose batch measures nothing: a copy for the next batch."""
        return self.pending is not None or self._copy_due(trainer.lr_scheduler)

    def after_any_step(self, trainer: GeNMixin, optimizer, record: StepRecord | None) -> None:
        """After every optimizer step (measuring or not): nothing to do here."""

    def one_step_line(self, trainer: GeNMixin, record: StepRecord) -> tuple[LineEstimate, float, list]:
        """The pending one-step line on this step's batch, not applied: its estimate, the distance the live weights
        sit at on it, and its two points as ``[a, loss]``; the copy is released."""
        (snapshot, at), self.pending = self.pending, None
        slope, loss = trainer._gen_known(record, snapshot, at)

        def at_start(a: float) -> torch.Tensor:  # the line is probed at its start only, which the copy holds exactly
            with snapshot.at_start():
                return trainer._gen_loss_here(record)

        result = measure_line(
            at_start, [0.0], known_at=at, loss=loss, slope=slope, precision=trainer._gen_precision(record)
        )
        snapshot.release()
        return result.estimate, at, [[0.0, result.probes[0][1]], [at, float(loss)]]

    def measure(self, trainer: GeNMixin, record: StepRecord) -> None:
        """The pending one-step line on this step's batch sets this step's lr (recorded as "next")."""
        estimate, at, probes = self.one_step_line(trainer, record)
        record.batch = []
        new_lr = trainer.lr_scheduler.apply_estimate(estimate, trainer.lr_scheduler.last_epoch)
        trainer._gen_write_trace(
            estimate, new_lr, at, "approx", {"probe_batch": NextBatch.name, "probe_losses": probes}
        )

    def after_step(self, trainer: GeNMixin, record: StepRecord) -> None:
        """On the first step only: a step that does not lower the loss even on the batch that produced it (in sample,
        where a step looks better than it is) overshot; it is cut back ``gen_max_change**3``-fold along its line
        (``hf_gen.core.cut_back``) and the lr restarted at the distance kept, which the next batch measures from."""
        scheduler = trainer.lr_scheduler
        if self.pending is None or scheduler.last_epoch != scheduler.first_step or not record.batch:
            return
        snapshot, a0 = self.pending
        loss = float(trainer._gen_reduce(record.loss))
        factor = scheduler.max_change**3
        result = cut_back(trainer._gen_line(record, snapshot), loss, a0, factor=factor,
                          max_probes=trainer.args.gen_search_probes,
                          precision=trainer._gen_precision(record))  # fmt: skip
        if result.at == a0:
            return
        snapshot.move_to(result.at)
        self.pending = (snapshot, result.at)
        new_lr = scheduler.restart(result.at, scheduler.last_epoch, reason="overshot")
        probes = [list(p) for p in result.probes]
        trainer._gen_write_trace(
            result.estimate, new_lr, a0, "approx", {"probe_batch": "same", "probe_losses": probes}
        )

    def state(self) -> dict | None:
        if self.pending is None:
            return None
        snapshot, at = self.pending
        return {"a0": at, "theta0": snapshot.local_state()}

    def load_state(self, trainer: GeNMixin, saved: dict) -> None:
        device = "cpu" if trainer.args.gen_offload_snapshot else None
        params = trainer._gen_params(check_linear_optimizer(trainer.optimizer))
        self.pending = (LineSnapshot.from_local_state(params, saved["theta0"], saved["a0"], device), saved["a0"])


@dataclass
class OpenLine:
    """A line through two windows' means (``start`` to ``end``) being measured on several batches: the summed losses
    at ``c = 0, 1, 2`` over ``count`` of the ``wanted`` batches. ``at`` is the level the windows ran at (the line's
    unit: ``c = 1`` is ``at``); ``one_step`` is the last step's line, measured beside it on its first batch. A
    fast-start line (``gen_fast_start_batches``) is applied when the next window closes; a settled one
    (``gen_line_batches``) as soon as its last batch is measured, smoothed for the ``span`` steps of its window."""

    start: list
    end: list
    at: float
    one_step: tuple | None
    wanted: int
    span: int | None = None  # settled lines: the closed window's length (applied once measured); None: at the close
    losses: list = field(default_factory=list)
    count: int = 0
    cost: float | None = None  # the jitter cost measured on the first batch (gen_jitter_cost), charged on the mean

    def add(self, losses: list) -> None:
        """One more batch's losses at ``c = 0, 1, 2``."""
        self.losses = list(losses) if not self.losses else [a + b for a, b in zip(self.losses, losses, strict=True)]
        self.count += 1

    def result(self, precision) -> LineResult:
        """The parabola through the mean losses over the batches measured (charged with ``cost`` per unit of ``c``)."""
        losses = [loss / self.count for loss in self.losses]
        if self.cost is not None:
            losses = charge_jitter(losses, self.cost)
        return self.fit(self.at, losses, precision)

    @staticmethod
    def fit(at: float, losses: list, precision) -> LineResult:
        """The parabola through ``losses`` at ``0, at, 2 at`` (``hf_gen.core.measure_line``)."""
        values = dict(zip((0.0, at, 2.0 * at), losses, strict=True))
        return measure_line(values.__getitem__, list(values), precision=precision)

    def local_state(self) -> dict:
        """What a checkpoint keeps: the start mean (the end is the scheme's previous mean) and the sums so far."""
        state = {"start": local_copies(self.start), "at": self.at, "count": self.count, "wanted": self.wanted,
                 "span": self.span, "losses": [float(loss) for loss in self.losses], "one_step": None,
                 "cost": self.cost}  # fmt: skip
        if self.one_step is not None:
            estimate, at, probes = self.one_step
            state["one_step"] = {"estimate": list(estimate), "at": at, "probes": probes}
        return state

    @classmethod
    def from_local_state(cls, state: dict, start: list, end: list, wanted: int) -> OpenLine:
        """``wanted``: the batches of a fast-start line, for a checkpoint saved before settled lines could be open."""
        one_step = state["one_step"]
        if one_step is not None:
            one_step = (LineEstimate(*one_step["estimate"]), one_step["at"], one_step["probes"])
        losses = [torch.tensor(loss, dtype=torch.float64) for loss in state["losses"]]
        wanted, span = state.get("wanted", wanted), state.get("span")
        return cls(start, end, state["at"], one_step, wanted, span, losses, state["count"], state.get("cost"))


class Witness:
    """The mean slope of the training loss along a line, from the gradients the optimizer steps with
    (``gen_fast_start_confirm``): ``<g, end - start>`` for each step's gradient ``g`` before clipping, summed on the
    device (read once, when a window closes). ``start`` is the earlier of the two means the line runs through; the
    end is the scheme's previous window mean, passed in."""

    def __init__(self) -> None:
        self.start: list | None = None
        self.total: torch.Tensor | None = None
        self.count = 0

    def add(self, trainer: GeNMixin, record: StepRecord, optimizer, end: list) -> None:
        params = trainer._gen_params(optimizer)
        grads = [p.grad for p in params]
        first = [t.to(p.device, non_blocking=True) for t, p in zip(end, params, strict=True)]
        second = [t.to(p.device, non_blocking=True) for t, p in zip(self.start, params, strict=True)]
        dot = directional_dot(grads, first, second)
        if dot is None:
            return
        dot = dot / trainer._gen_clip_factor(record)
        self.total = dot if self.total is None else self.total + dot
        self.count += 1

    def take(self, trainer: GeNMixin) -> float | None:
        """The mean slope since the last read (averaged over processes), or None without one; the sum starts afresh."""
        total, count = self.total, self.count
        self.total, self.count = None, 0
        if total is None or count == 0:
            return None
        return float(trainer._gen_reduce(total)) / count

    def local_state(self, with_start: bool) -> dict:
        """What a checkpoint keeps; the start only when no open line holds the same mean (``with_start``)."""
        total = None if self.total is None else float(self.total)
        return {"start": local_copies(self.start) if with_start else None, "total": total, "count": self.count}

    def load_local_state(self, params: list, state: dict, device, start: list | None) -> None:
        """Restore; ``start`` is the open line's start mean when it holds this one (saved once)."""
        if state["start"] is not None:
            start = [laid_out_like(p, t, device, t.dtype) for p, t in zip(params, state["start"], strict=True)]
        self.start = start
        self.count = state["count"]
        total = state["total"]
        self.total = None if total is None else torch.tensor(total, dtype=torch.float64, device=params[0].device)


class Averages(NextBatch):
    """The line through the mean weights of the last two windows of steps, measured on the batch after them (out of
    sample).

    Why: the one-step line of ``NextBatch`` makes the estimate the greedy lr for the next step, and a greedy lr is
    biased by its short horizon. Over one step a smaller lr lowers the loss that the noise holds up along sharp
    directions; the progress a larger lr makes along flat ones only shows over many steps (Wu, Ren, Liao and Grosse,
    "Understanding Short-Horizon Bias in Stochastic Meta-Optimization", ICLR 2018). The bias also runs the other way:
    on a pretrained model fine-tuned with Adam, the step that is best for one batch is several times the lr that
    works over the run, and a run that follows it stops learning. A line through two end points of a longer window
    has its own bias: at a constant lr the weights jitter about a mean along the sharp directions, and on a line
    through two jittered points the loss is lowest near halfway, whatever the lr. The mean of the weights over a
    window averages the jitter out (as annealing at the end of a run does), so the line between two windows' means
    measures the progress the steps made, not their noise. Its minimiser ``c*``, in units of the distance between
    the means, says by what factor the same steps should have been longer: the line is scaled so that the later
    mean sits at the level, and the estimate ``c* * level`` is folded into the level like any other (a decay shape,
    if one is set, anneals what is applied). Towards the end of a run the progress between two windows' means
    shrinks against the curvature along it, ``c*`` falls below 1 and the level comes down without a shape (on most
    benchmark tasks, not all: see benchmarks/RESULTS.md).

    The fast start measures the same lines, through windows of ``gen_interval`` steps (the level is set to the
    estimate, clipped to the probed span, until one lands inside it); once settled the windows are ``gen_window``
    steps long and the level is smoothed, each line by :func:`hf_gen.scheduler.line_gamma` for its span (the same
    memory in steps as one-step lines; with ``kalman_gain`` the steady-state gain of a measurement with one batch's
    noise, which weighs a long window's line far less). With ``fast_start_lines="both"`` (the default) the last step's
    line is measured on the same batch too, and a window's line may raise the level only as far as it also goes: the
    one-step estimate overshoots on fine-tunes and the short window early in a run from scratch; the cap keeps the
    lower of the two on the way up. A level held at the cap has settled, unless the last step's line had no minimiser
    of its own (it rose, or was straight, on this batch): at a level far below the useful one, as on a LoRA fine-tune
    from the Trainer's default lr, one step moves the loss less than the batch's noise does, and such a line says
    nothing. ``"windows"`` drops the cap; ``"next"`` measures one-step lines on the next
    batch instead (``NextBatch``; the scheme's behaviour before windows ran the fast start too).

    A fast-start line is taken without smoothing, so the one batch it is measured on decides it. With
    ``fast_start_batches=N > 1`` it is measured on the first ``N`` batches of the window that follows as well (three
    forwards each, the losses averaged) and applied when that window closes, before the next line opens. Its estimate
    is ``c*`` times the level its windows ran at; the level moves from where it is now, and the fast start ends when
    the estimate lands within the change bound of the level it measured (``measured_at`` in
    :meth:`GeNScheduler.apply_estimate`). The last step's line that caps it is measured on the first batch, as with
    one batch.

    With ``fast_start_confirm``, a fast-start jump needs a second witness: the training gradients of the steps since
    the last window closed. Their mean slope along the last line opened (the two latest windows' means, from the
    earlier to the later) is free, comes from several batches, and none of those batches moved the weights the line
    runs through. Negative, the loss still descends along that line where the run is now; positive, the run is past
    its minimum. A jump to the change bound is taken only in the direction the slope agrees with; otherwise the level
    holds and the fast start goes on (:meth:`GeNScheduler.apply_estimate`, ``slope``). Costs: one dot product of the
    gradients per fast-start step, and the earlier mean held (one more copy of the weights) until the fast start ends.

    With ``jitter_cost`` (``gen_jitter_cost``, the default), each line is charged with what a longer step costs in
    jitter: the means average the jitter out, so the line sees the steps' progress only, while the live weights carry
    it. Their loss on the line's batch (the training step's) above the parabola, at the point of the line they have
    reached, is the cost at the level the windows ran at; it grows in proportion to the lr, so the probe at ``c`` is
    charged ``c`` times it (:func:`hf_gen.core.jitter_cost`, :func:`hf_gen.core.charge_jitter`). A pretrained
    fine-tune held at too high an lr jitters well above its lines, a model from a config much less: the charge tells
    them apart where the uncharged line cannot. With ``fast_start_jitter`` alone (the default before), only the fast
    start's window lines are charged: the line that ends the fast start sets the level the first long window runs at
    unmeasured, while the settled lines are smoothed and measured again every window.

    A line whose fit is concave and whose later probes all lie at or above its start did not descend over the
    windows: the level goes down (:func:`hf_gen.core.no_descent_seen`).

    With ``fast_start_noise=z``, each fast-start line measured on one batch is also measured on that batch's chunks
    (``GeNMixin._gen_chunk_losses``, three more forwards in small pieces): when no two of its probes differ by more
    than ``z`` standard errors of the chunks' noise (:func:`hf_gen.core.probes_resolved`), the line says nothing and
    the level holds (``"below_noise"``), where its unsmoothed estimate would move the level or end the fast start on
    noise. ``z = 0`` records the statistic (``noise_t``) and acts on every line as without the test.

    Costs: three forwards per window (the line at ``c = 0, 1, 2``; no slope is known there), and during the fast
    start one more for the last step's line; one addition of the weights per step; two copies of the weights held
    (the open window's sum and the previous window's mean), and a third while a line is measured (the live weights,
    put back after the probes) or, in the fast start, over the step before a measurement (the last step's start).
    The windows' state is saved with a checkpoint and restored on resume.
    """

    name = "averages"

    def __init__(
        self,
        window: int | None,
        device: str | None = None,
        fast_start_lines: str = "both",
        fast_start_batches: int = 1,
        fast_start_confirm: bool = False,
        grow_windows: bool = False,
        line_batches: int = 1,
        jitter_cost: bool = False,
        undo_lost_windows: bool = False,
        raise_needs_progress: bool = False,
        fast_start_jitter: bool = False,
        pace_unit: bool = False,
        kalman_gain: bool = False,
        fast_start_noise: float | None = None,
    ) -> None:
        super().__init__()
        self.window = window
        self.grow = grow_windows
        self.growing: int | None = None  # the open settled window's length, fixed when it opened (grow_windows)
        self.means = WindowMeans(device)
        self.lines = fast_start_lines  # "both", "windows" or "next": the fast start's lines
        self.batches = fast_start_batches
        self.line_batches = line_batches  # the batches each settled line is measured on
        self.jitter = jitter_cost  # charge each window line with the jitter a longer step costs
        self.start_jitter = fast_start_jitter  # charge the fast start's window lines only
        self.line: OpenLine | None = None  # a line still being measured on the next window's batches
        self.confirm = fast_start_confirm
        self.witness = Witness()  # the gradients' slope along the last line opened (fast_start_confirm)
        self.undo = undo_lost_windows
        self.losses = WindowLosses()  # the open window's training losses, and the window the run is measured against
        self.needs_progress = raise_needs_progress
        self.progress = True  # whether the last settled window's training loss fell (raise_needs_progress)
        self.trend: list | None = None  # its mean training loss, the previous window's, and the test's standard error
        self.pace_unit = pace_unit  # a line's unit: the lr its steps were walked at (else the level at its close)
        self.pace = Pace()  # the steps' clocks, beside the weights' means
        self.paced: tuple[list[float], float] | None = None  # the earlier window's clocks, and the live weights' place
        self.kalman = kalman_gain  # a settled line's weight: the gain of a noisy measurement (else memory in steps)
        self.noise_z = fast_start_noise  # a fast-start line its batch's noise does not resolve at z holds the level

    def _one_step(self, trainer: GeNMixin) -> bool:
        """Whether one-step lines are in charge (``fast_start_lines="next"``, until the fast start has settled and
        its last line is measured)."""
        return self.lines == "next" and (not trainer.lr_scheduler.settled or self.pending is not None)

    def _span(self, trainer: GeNMixin) -> int:
        """Steps in the open window: ``gen_interval`` during the fast start, then ``gen_window`` (with
        ``grow_windows``: from ``2 * gen_interval``, doubling at each close, up to ``gen_window``)."""
        scheduler = trainer.lr_scheduler
        if not scheduler.settled:
            return scheduler.interval
        if self.window is None:  # a twentieth of the run: about twenty measurements, at least one per interval
            self.window = max(scheduler.interval, math.ceil((scheduler.num_training_steps or 0) / 20))
        if not self.grow:
            return self.window
        if self.growing is None:  # the first window after the fast start
            self.growing = min(self.window, 2 * scheduler.interval)
        return self.growing

    def _ready(self, trainer: GeNMixin) -> bool:
        return self.means.previous is not None and self.means.count >= self._span(trainer)

    def _first(self, trainer: GeNMixin) -> bool:
        """The first step, whose own batch can veto a starting lr that overshoots (``NextBatch.after_step``)."""
        return (
            trainer.lr_scheduler.last_epoch == trainer.lr_scheduler.first_step and trainer.args.gen_search_probes > 0
        )

    def _line_open(self) -> bool:
        """Whether the open line still wants batches (``fast_start_batches`` or ``line_batches`` > 1)."""
        return self.line is not None and self.line.count < self.line.wanted

    def measures(self, trainer: GeNMixin) -> bool:
        if self._one_step(trainer):
            return super().measures(trainer)
        return self._first(trainer) or self._ready(trainer) or self._line_open()

    def _confirm_next(self, trainer: GeNMixin) -> bool:
        """Whether the step about to be taken closes a window the fast start measures on the next batch: its line is
        then measured there too (the copy of the weights before it is kept)."""
        if self.lines != "both" or trainer.lr_scheduler.settled:
            return False
        return self.means.previous is not None and self.means.count + 1 >= self._span(trainer)

    def wants_hook(self, trainer: GeNMixin) -> bool:
        if self._one_step(trainer):
            return super().wants_hook(trainer)
        return (self._first(trainer) or self._ready(trainer) or self._confirm_next(trainer) or self._line_open()
                or self.witness.start is not None)  # fmt: skip

    def before_step(self, trainer: GeNMixin, record: StepRecord, optimizer) -> None:
        if self._one_step(trainer):
            super().before_step(trainer, record, optimizer)
            return
        if record.measures and record.batch and self._line_open():
            self.line.add(self._probe(trainer, record, optimizer, self.line.start, self.line.end)[0])
            record.batch = []
            if self.line.span is not None and not self._line_open():  # a settled line's last batch: applied now
                line, self.line = self.line, None
                self.apply_line(trainer, line.result(trainer._gen_precision(record)), line.at, line.span, None,
                                batches=line.count, cost=line.cost)  # fmt: skip
        elif record.measures and record.batch and self._ready(trainer):
            self.measure_means(trainer, record, optimizer)
        if self.witness.start is not None:  # after a close: this step's gradient is the next window's first
            self.witness.add(trainer, record, optimizer, self.means.previous)
        if self._first(trainer) or self._confirm_next(trainer):  # a copy of the weights before this step
            snapshot = trainer._gen_snapshot(optimizer)
            self.pending = (snapshot, snapshot.a0)

    def after_step(self, trainer: GeNMixin, record: StepRecord) -> None:
        super().after_step(trainer, record)
        if (
            self.lines == "next"
            or self.pending is None
            or trainer.lr_scheduler.last_epoch != trainer.lr_scheduler.first_step
        ):
            return
        # The first step's check is done (no window is open yet, so no line of this step is measured): its copy goes,
        # and its weights (cut back or not) open the window.
        self.pending[0].release()
        self.pending = None
        self._add(trainer, trainer.optimizer, record)

    def after_any_step(self, trainer: GeNMixin, optimizer, record: StepRecord | None) -> None:
        """After every optimizer step outside the one-step lines: the new weights join the open window; the first
        complete window becomes the reference the next one is measured from."""
        scheduler = trainer.lr_scheduler
        first_check = self.pending is not None and scheduler.last_epoch == scheduler.first_step  # added after it
        if self._one_step(trainer) or first_check or scheduler.last_epoch < scheduler.first_step:  # or in the warmup
            return
        self._add(trainer, optimizer, record)

    def _add(self, trainer: GeNMixin, optimizer, record: StepRecord | None) -> None:
        self.means.add(trainer._gen_params(optimizer))
        if self.pace_unit:
            self.pace.add(trainer.lr_scheduler.level)  # the level the step just taken ran at
        if self._tracks_losses:
            self.losses.add(record.loss if record is not None else None)
        if self.means.previous is None and self.means.count == self._span(trainer):
            self.means.previous = self.means.close()
            if self.pace_unit:
                self.pace.previous = self.pace.close()
            if self._tracks_losses:
                self.losses.previous = self._close_losses(trainer)

    @property
    def _tracks_losses(self) -> bool:
        """The windows' training losses are kept (``undo_lost_windows`` or ``raise_needs_progress``)."""
        return self.undo or self.needs_progress

    def _close_losses(self, trainer: GeNMixin):
        """The statistics of the window closing now (``settled``: it ran after the fast start)."""
        return self.losses.close(trainer._gen_reduce, trainer.lr_scheduler.settled)

    def _probe(self, trainer: GeNMixin, record: StepRecord, optimizer, start, end,
               noise: bool = False) -> tuple[list[torch.Tensor], list | None]:  # fmt: skip
        """The losses of the record's batch at ``start + c (end - start)`` for ``c = 0, 1, 2``; the live weights are
        put back after. With ``noise``, also each chunk's loss there (``GeNMixin._gen_chunk_losses``; ``None`` when
        the batch cannot be cut), after the whole batch's, which they leave as it would be without them."""
        params = trainer._gen_params(optimizer)
        with torch.no_grad():
            live = [p.detach().clone() for p in params]
        chunks = [] if noise else None
        try:
            losses = []
            for c in (0.0, 1.0, 2.0):  # 0-d tensors, read once all three are queued (measure_line)
                WindowMeans.move(params, start, end, c)
                losses.append(trainer._gen_loss_here(record))
                if chunks is not None:
                    chunks.append(trainer._gen_chunk_losses(record))
        finally:
            with torch.no_grad():
                for p, x in zip(params, live, strict=True):
                    p.copy_(x)
        if chunks is not None and any(chunk is None for chunk in chunks):
            chunks = None
        return losses, chunks

    def measure_means(self, trainer: GeNMixin, record: StepRecord, optimizer) -> None:
        scheduler = trainer.lr_scheduler
        at = scheduler.level  # the level the closing window ran at: the estimate is c* times it
        span = self._span(trainer)
        suspect = None  # a window whose training loss rose: taken back if the line's batch agrees (_measure)
        if self._tracks_losses:
            before, after = self.losses.previous, self._close_losses(trainer)
            both = before is not None and before.settled and after.settled
            lost, se = lost_ground(before, after) if both and self.undo else (False, math.nan)
            if lost:
                suspect = (before, after, se)
            else:
                self.losses.previous = after
            # A settled line may raise the level only after a window whose training loss fell: a run whose loss has
            # stopped falling is at the floor its lr's noise holds it on, which a longer step raises.
            progress, trend_se = made_progress(before, after) if both else (True, math.nan)
            self.progress = progress or not self.needs_progress
            self.trend = [before.mean, after.mean, trend_se] if both and self.needs_progress else None
        previous, mean = self.means.previous, self.means.close()
        self.means.previous = mean
        if self.pace_unit:  # the lr the steps between the two means ran at, not the level at the close
            earlier, later = self.pace.previous, self.pace.close()
            self.pace.previous = later
            at, position = line_pace(earlier, later, self.pace.now)
            self.paced = (earlier, position)
        slope = self.witness.take(trainer)  # the gradients' slope since the last close, along the line opened then
        self._measure(trainer, record, optimizer, at, span, previous, mean, slope, suspect)
        if self.grow and self.growing is not None:  # the window opening now is twice the one that closed
            self.growing = min(self.window, 2 * span)
        # The next window's gradients witness the line opened now, from the earlier mean to the later, until the fast
        # start ends (a line measured on several batches holds the same earlier mean as its start).
        self.witness.start = previous if self.confirm and not scheduler.settled else None

    def _undo(self, trainer: GeNMixin, record: StepRecord, optimizer, at: float, previous, suspect, losses) -> None:
        """The window that closed lost ground on the one before it (``gen_undo_lost_windows``): its training loss
        rose (:func:`hf_gen.core.lost_ground`), and on the batch after it its mean is worse than the earlier window's.
        The weights go back to the earlier window's mean, which stays the reference (its losses too), and the level
        comes down by the change bound at once, as when a loss is non-finite. The line is not applied: its later end
        is the window taken back. The tail's mean, if one is being taken, starts again from here. The optimizer's
        state (Adam's moments) is kept."""
        self.means.previous = previous  # the lost window's mean is dropped
        WindowMeans.put(trainer._gen_params(optimizer), previous)
        if self.pace_unit:  # the weights are the earlier mean: so are the clocks
            earlier = self.paced[0]
            self.pace.previous, self.pace.now = earlier, list(earlier)
        if self.pending is not None:
            self.pending[0].release()
            self.pending = None
        record.batch = []
        trainer._gen_restart_tail()
        scheduler = trainer.lr_scheduler
        before, after, se = suspect
        estimate = LineEstimate(None, math.nan, math.nan, float(losses[0]), False, "lost_window")
        new_lr = scheduler.apply_estimate(estimate, scheduler.last_epoch)
        probes = [[c * at, float(x)] for c, x in zip((0, 1, 2), losses, strict=True)]
        extra = {"probe_batch": self.name, "probe_losses": probes, "window_losses": [before.mean, after.mean],
                 "window_loss_se": se}  # fmt: skip
        trainer._gen_write_trace(estimate, new_lr, at, "approx", extra)

    def _measure(self, trainer: GeNMixin, record: StepRecord, optimizer, at, span, previous, mean, slope,
                 suspect=None) -> None:  # fmt: skip
        """Apply the open line (if any) and measure the line from ``previous`` to ``mean`` on the record's batch;
        ``suspect``: the window's losses rose (``gen_undo_lost_windows``), and it is taken back if the line's batch
        finds its mean worse than the earlier one."""
        scheduler = trainer.lr_scheduler
        if self.line is not None:  # the line opened when the last window closed, measured on this window's batches
            line, self.line = self.line, None
            self.apply_line(trainer, line.result(trainer._gen_precision(record)), line.at, span, line.one_step,
                            batches=line.count, slope=slope, cost=line.cost)  # fmt: skip
            if scheduler.settled:  # the long windows start here; the window that just closed is their reference
                if self.pending is not None:  # its last step's line would cap a climb that is over: not measured
                    self.pending[0].release()
                    self.pending = None
                record.batch = []
                return
        one_step = self.one_step_line(trainer, record) if self.pending is not None else None  # releases its copy
        # A fast-start line measured on one batch: whether that batch's noise resolves its probes (fast_start_noise)
        tested = self.noise_z is not None and not scheduler.settled and self.batches == 1
        losses, chunks = self._probe(trainer, record, optimizer, previous, mean, noise=tested)
        if suspect is not None:
            start, end = float(losses[0]), float(losses[1])
            if math.isfinite(start) and not end <= start:  # worse there, or not finite where the earlier mean is
                self._undo(trainer, record, optimizer, at, previous, suspect, losses)
                return
            self.losses.previous = suspect[1]  # kept (the data may have changed): the new reference
        cost = self._jitter(trainer, record, losses, span)
        record.batch = []
        if self.batches > 1 and not scheduler.settled:  # measured on the next window's batches too: applied after it
            self.line = OpenLine(previous, mean, at, one_step, self.batches, cost=cost)
            self.line.add(losses)
            return
        if self.line_batches > 1 and scheduler.settled:  # measured on the next batches too: applied after the last
            self.line = OpenLine(previous, mean, at, None, self.line_batches, span, cost=cost)
            self.line.add(losses)
            return
        line = OpenLine(previous, mean, at, None, 1, cost=cost)
        line.add(losses)
        noise = None if chunks is None else probes_resolved([chunk.tolist() for chunk in chunks], self.noise_z)
        self.apply_line(trainer, line.result(trainer._gen_precision(record)), at, span, one_step, slope=slope,
                        cost=cost, noise=noise)  # fmt: skip

    def _jitter(self, trainer: GeNMixin, record: StepRecord, losses: list, span: int) -> float | None:
        """With ``jitter_cost``: what the live weights' jitter costs on the record's batch, per unit of the line
        (:func:`hf_gen.core.jitter_cost`). The live weights are the closed window's last: at a steady pace
        they lie ``(span - 1) / 2`` steps past its mean, ``(span - 1) / (2 span)`` of the way to the next one.
        Their loss is the training step's on this batch (same dropout masks as the probes), so this is free.
        With ``pace_unit`` their place is read from the steps' clocks (:func:`hf_gen.core.line_pace`), which also
        holds when the level changed between the windows or the windows differ in length.
        With ``fast_start_jitter`` alone, only the lines measured before the fast start has settled are charged."""
        if not (self.jitter or (self.start_jitter and not trainer.lr_scheduler.settled)):
            return None
        if self.pace_unit:
            position = self.paced[1]
        else:
            position = 1.0 + (span - 1) / (2.0 * span)
        return jitter_cost(losses, position, trainer._gen_reduce(record.loss))

    def apply_line(self, trainer: GeNMixin, result, at: float, span: int, one_step, batches: int = 1,
                   slope: float | None = None, cost: float | None = None,
                   noise: tuple[bool | None, float, int] | None = None) -> None:  # fmt: skip
        """Fold a window line measured at level ``at`` (and the last step's line beside it, if any) into the level;
        ``slope`` is the training gradients' witness of a fast-start jump (``fast_start_confirm``); ``noise`` is
        :func:`hf_gen.core.probes_resolved`'s verdict and statistic on the line's batch, and its chunks
        (``fast_start_noise``)."""
        scheduler = trainer.lr_scheduler
        estimate = no_descent_seen(result.estimate, result.probes)
        unresolved = noise is not None and noise[0] is False and not scheduler.settled
        if unresolved:  # its batch cannot tell the probes apart: the line says nothing, and the level holds
            estimate = LineEstimate(None, estimate.slope, estimate.curvature, estimate.loss0, False, "below_noise")
        # gamma is the smoothing of a one-step line every interval; a line over span steps is weighed from it
        # (scheduler.line_gamma: the same memory in steps, or with kalman_gain the gain of a noisy measurement).
        gamma = line_gamma(scheduler.gamma, span, scheduler.interval, self.kalman)
        extra = {"probe_batch": self.name, "probe_losses": [list(p) for p in result.probes]}
        if batches > 1:
            extra["line_batches"] = batches
        if slope is not None:
            extra["gradient_slope"] = slope
        if cost is not None:
            extra["jitter_cost"] = cost
        if noise is not None:
            extra["noise_t"], extra["noise_chunks"] = noise[1], noise[2]
        if self.trend is not None and scheduler.settled:
            extra["window_losses"], extra["window_loss_se"] = self.trend[:2], self.trend[2]
        cap, cap_settles = None, True
        if one_step is not None:
            # The fast start follows the window's line down at once, but up only as far as the last step's line on
            # this batch also goes: a climb must be confirmed by what the next step can gain. Each line guards
            # against the other's bias: a one-step estimate is several times the lr that works over a fine-tune,
            # and a short window early in a run from scratch still sees the steep start. Held at the cap, the level
            # has settled (if the cap was measured), and the long windows move it from there.
            estimate_1, _, probes_1 = one_step
            cap = max(scheduler.preview(estimate_1), scheduler.level)
            # A last-step line with no estimate of its own (a straight or rising line on this batch: noise, at a
            # level whose steps move the loss less than one batch's noise does) bounds this climb, but settles nothing.
            cap_settles = estimate_1.accepted
            extra.update(one_step_alpha_star=estimate_1.alpha_star, one_step_probe_losses=probes_1,
                         one_step_fallback=estimate_1.reason)  # fmt: skip
        new_lr = scheduler.apply_estimate(estimate, scheduler.last_epoch, gamma=gamma, cap=cap,
                                          cap_settles=cap_settles, measured_at=at, slope=slope,
                                          may_raise=self.progress)  # fmt: skip
        trainer._gen_write_trace(estimate, new_lr, at, "approx", extra)

    def state(self) -> dict | None:
        state = {**(super().state() or {}), **self.means.local_state()}
        if self.growing is not None:
            state["window_now"] = self.growing
        if self.line is not None:
            state["open_line"] = self.line.local_state()
        if self.pace_unit:
            state["pace"] = self.pace.state()
        if self._tracks_losses:
            state["window_losses"] = self.losses.local_state()
            state["progress"], state["trend"] = self.progress, self.trend
        if self.witness.start is not None:
            state["witness"] = self.witness.local_state(
                with_start=self.line is None or self.line.start is not self.witness.start
            )
        return state

    def load_state(self, trainer: GeNMixin, saved: dict) -> None:
        if "theta0" in saved:
            super().load_state(trainer, saved)
        params = trainer._gen_params(check_linear_optimizer(trainer.optimizer))
        self.means.load_local_state(params, saved)
        if self.pace_unit:
            if "pace" not in saved:
                raise ValueError(
                    "gen_pace_unit reads each line's unit from the steps' clocks, which this checkpoint was saved "
                    "without (by a run with gen_pace_unit=False): resume it with gen_pace_unit=False, or start again"
                )
            self.pace.load_state(saved["pace"])
        if self.grow:  # the open window keeps the length it opened with
            self.growing = saved.get("window_now")
        if self._tracks_losses and "window_losses" in saved:
            self.losses.load_local_state(saved["window_losses"], trainer.args.device)
            self.progress, self.trend = bool(saved.get("progress", True)), saved.get("trend")
        if "open_line" in saved:  # its end is the previous window's mean, restored just above
            start = [laid_out_like(p, t, self.means.device, t.dtype)
                     for p, t in zip(params, saved["open_line"]["start"], strict=True)]  # fmt: skip
            self.line = OpenLine.from_local_state(saved["open_line"], start, self.means.previous, self.batches)
        if "witness" in saved and self.confirm:  # a run resumed without the option does not use it
            line_start = self.line.start if self.line is not None else None
            self.witness.load_local_state(params, saved["witness"], self.means.device, line_start)
