"""Where GeN measures its lines: one class per probe scheme, and the pieces they keep between steps.

The Trainer glue (:mod:`hf_gen.trainer`) keeps one :class:`StepRecord` per optimizer step and calls the scheme it
was built with around each optimizer step (``before_step`` in the optimizer's pre-hook, ``after_step`` in its
post-hook, ``after_any_step`` after every step); the scheme measures lines through the glue's ``g(a)`` (the
``trainer._gen_*`` methods) and hands each estimate to the scheduler:

* :class:`Averages` (``gen_probe_batch="averages"``, the default in approx mode): the line through two windows' mean
  weights, measured on the batch after them (:func:`window_line`).
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
    measure_line,
    no_descent_seen,
)
from .line import (
    LineSnapshot,
    Pace,
    RngState,
    WindowLosses,
    WindowMeans,
)
from .scheduler import GeNEstimateError, line_gamma
from .support import check_linear_optimizer

if TYPE_CHECKING:
    from .trainer import GeNMixin

__all__ = ["Averages", "NextBatch", "SameBatch", "StepRecord", "window_line"]


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


# What the window lines' checkpoints held for options measured and removed, and the option that wrote it.
REMOVED_STATE = {
    "open_line": "gen_fast_start_batches or gen_line_batches (a line measured on several batches)",
    "witness": "gen_fast_start_confirm",
    "window_now": "gen_grow_windows",
    "trend": "gen_raise_needs_progress",
}


def window_line(at: float, losses: list, precision, cost: float | None = None) -> LineResult:
    """The parabola through a line's losses at ``c = 0, 1, 2`` (the distances ``0, at, 2 at``: ``at`` is the level
    the windows ran at, the line's unit), charged with ``cost`` per unit of ``c`` when given
    (:func:`hf_gen.core.charge_jitter`), by :func:`hf_gen.core.measure_line`."""
    if cost is not None:
        losses = charge_jitter(losses, cost)
    values = dict(zip((0.0, at, 2.0 * at), losses, strict=True))
    return measure_line(values.__getitem__, list(values), precision=precision)


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

    A fast-start line is taken without smoothing, so the one batch it is measured on decides it. Its estimate is
    ``c*`` times the level its windows ran at; the fast start ends when the estimate lands within the change bound of
    the level it measured (``measured_at`` in :meth:`GeNScheduler.apply_estimate`).

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
        jitter_cost: bool = False,
        undo_lost_windows: bool = False,
        fast_start_jitter: bool = False,
        pace_unit: bool = False,
        kalman_gain: bool = False,
    ) -> None:
        super().__init__()
        self.window = window
        self.means = WindowMeans(device)
        self.lines = fast_start_lines  # "both", "windows" or "next": the fast start's lines
        self.jitter = jitter_cost  # charge each window line with the jitter a longer step costs
        self.start_jitter = fast_start_jitter  # charge the fast start's window lines only
        self.undo = undo_lost_windows
        self.losses = WindowLosses()  # the open window's training losses, and the window the run is measured against
        self.pace_unit = pace_unit  # a line's unit: the lr its steps were walked at (else the level at its close)
        self.pace = Pace()  # the steps' clocks, beside the weights' means
        self.paced: tuple[list[float], float] | None = None  # the earlier window's clocks, and the live weights' place
        self.kalman = kalman_gain  # a settled line's weight: the gain of a noisy measurement (else memory in steps)

    def _one_step(self, trainer: GeNMixin) -> bool:
        """Whether one-step lines are in charge (``fast_start_lines="next"``, until the fast start has settled and
        its last line is measured)."""
        return self.lines == "next" and (not trainer.lr_scheduler.settled or self.pending is not None)

    def _span(self, trainer: GeNMixin) -> int:
        """Steps in the open window: ``gen_interval`` during the fast start, then ``gen_window``."""
        scheduler = trainer.lr_scheduler
        if not scheduler.settled:
            return scheduler.interval
        if self.window is None:  # a twentieth of the run: about twenty measurements, at least one per interval
            self.window = max(scheduler.interval, math.ceil((scheduler.num_training_steps or 0) / 20))
        return self.window

    def _ready(self, trainer: GeNMixin) -> bool:
        return self.means.previous is not None and self.means.count >= self._span(trainer)

    def _first(self, trainer: GeNMixin) -> bool:
        """The first step, whose own batch can veto a starting lr that overshoots (``NextBatch.after_step``)."""
        return (
            trainer.lr_scheduler.last_epoch == trainer.lr_scheduler.first_step and trainer.args.gen_search_probes > 0
        )

    def measures(self, trainer: GeNMixin) -> bool:
        if self._one_step(trainer):
            return super().measures(trainer)
        return self._first(trainer) or self._ready(trainer)

    def _confirm_next(self, trainer: GeNMixin) -> bool:
        """Whether the step about to be taken closes a window the fast start measures on the next batch: its line is
        then measured there too (the copy of the weights before it is kept)."""
        if self.lines != "both" or trainer.lr_scheduler.settled:
            return False
        return self.means.previous is not None and self.means.count + 1 >= self._span(trainer)

    def wants_hook(self, trainer: GeNMixin) -> bool:
        if self._one_step(trainer):
            return super().wants_hook(trainer)
        return self._first(trainer) or self._ready(trainer) or self._confirm_next(trainer)

    def before_step(self, trainer: GeNMixin, record: StepRecord, optimizer) -> None:
        if self._one_step(trainer):
            super().before_step(trainer, record, optimizer)
            return
        if record.measures and record.batch and self._ready(trainer):
            self.measure_means(trainer, record, optimizer)
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
        if self.undo:
            self.losses.add(record.loss if record is not None else None)
        if self.means.previous is None and self.means.count == self._span(trainer):
            self.means.previous = self.means.close()
            if self.pace_unit:
                self.pace.previous = self.pace.close()
            if self.undo:
                self.losses.previous = self._close_losses(trainer)

    def _close_losses(self, trainer: GeNMixin):
        """The statistics of the window closing now (``settled``: it ran after the fast start)."""
        return self.losses.close(trainer._gen_reduce, trainer.lr_scheduler.settled)

    def _probe(self, trainer: GeNMixin, record: StepRecord, optimizer, start, end) -> list[torch.Tensor]:
        """The losses of the record's batch at ``start + c (end - start)`` for ``c = 0, 1, 2``; the live weights are
        put back after."""
        params = trainer._gen_params(optimizer)
        with torch.no_grad():
            live = [p.detach().clone() for p in params]
        try:
            losses = []
            for c in (0.0, 1.0, 2.0):  # 0-d tensors, read once all three are queued (measure_line)
                WindowMeans.move(params, start, end, c)
                losses.append(trainer._gen_loss_here(record))
        finally:
            with torch.no_grad():
                for p, x in zip(params, live, strict=True):
                    p.copy_(x)
        return losses

    def measure_means(self, trainer: GeNMixin, record: StepRecord, optimizer) -> None:
        scheduler = trainer.lr_scheduler
        at = scheduler.level  # the level the closing window ran at: the estimate is c* times it
        span = self._span(trainer)
        suspect = None  # a window whose training loss rose: taken back if the line's batch agrees (_measure)
        if self.undo:
            before, after = self.losses.previous, self._close_losses(trainer)
            both = before is not None and before.settled and after.settled
            lost, se = lost_ground(before, after) if both else (False, math.nan)
            if lost:
                suspect = (before, after, se)
            else:
                self.losses.previous = after
        previous, mean = self.means.previous, self.means.close()
        self.means.previous = mean
        if self.pace_unit:  # the lr the steps between the two means ran at, not the level at the close
            earlier, later = self.pace.previous, self.pace.close()
            self.pace.previous = later
            at, position = line_pace(earlier, later, self.pace.now)
            self.paced = (earlier, position)
        self._measure(trainer, record, optimizer, at, span, previous, mean, suspect)

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

    def _measure(self, trainer: GeNMixin, record: StepRecord, optimizer, at, span, previous, mean,
                 suspect=None) -> None:  # fmt: skip
        """Measure the line from ``previous`` to ``mean`` on the record's batch and apply it; ``suspect``: the
        window's losses rose (``gen_undo_lost_windows``), and it is taken back if the line's batch finds its mean
        worse than the earlier one."""
        one_step = self.one_step_line(trainer, record) if self.pending is not None else None  # releases its copy
        losses = self._probe(trainer, record, optimizer, previous, mean)
        if suspect is not None:
            start, end = float(losses[0]), float(losses[1])
            if math.isfinite(start) and not end <= start:  # worse there, or not finite where the earlier mean is
                self._undo(trainer, record, optimizer, at, previous, suspect, losses)
                return
            self.losses.previous = suspect[1]  # kept (the data may have changed): the new reference
        cost = self._jitter(trainer, record, losses, span)
        record.batch = []
        result = window_line(at, losses, trainer._gen_precision(record), cost)
        self.apply_line(trainer, result, at, span, one_step, cost=cost)

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

    def apply_line(self, trainer: GeNMixin, result, at: float, span: int, one_step,
                   cost: float | None = None) -> None:  # fmt: skip
        """Fold a window line measured at level ``at`` (and the last step's line beside it, if any) into the level;
        ``cost`` is the jitter it was charged with (recorded)."""
        scheduler = trainer.lr_scheduler
        estimate = no_descent_seen(result.estimate, result.probes)
        # gamma is the smoothing of a one-step line every interval; a line over span steps is weighed from it
        # (scheduler.line_gamma: the same memory in steps, or with kalman_gain the gain of a noisy measurement).
        gamma = line_gamma(scheduler.gamma, span, scheduler.interval, self.kalman)
        extra = {"probe_batch": self.name, "probe_losses": [list(p) for p in result.probes]}
        if cost is not None:
            extra["jitter_cost"] = cost
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
                                          cap_settles=cap_settles, measured_at=at)  # fmt: skip
        trainer._gen_write_trace(estimate, new_lr, at, "approx", extra)

    def state(self) -> dict | None:
        state = {**(super().state() or {}), **self.means.local_state()}
        if self.pace_unit:
            state["pace"] = self.pace.state()
        if self.undo:
            state["window_losses"] = self.losses.local_state()
        return state

    def load_state(self, trainer: GeNMixin, saved: dict) -> None:
        for key, option in REMOVED_STATE.items():  # a run that resumed without it would not be the run it continues
            if saved.get(key) is not None:
                raise ValueError(
                    f"this checkpoint holds the state of {option}, an option hf-gen no longer has: resume it with "
                    "the hf-gen version that saved it, or start again"
                )
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
        if self.undo and "window_losses" in saved:
            self.losses.load_local_state(saved["window_losses"], trainer.args.device)
