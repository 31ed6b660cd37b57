"""The GeN learning-rate state machine as a ``torch.optim.lr_scheduler.LRScheduler``.

The scheduler owns everything that must survive a checkpoint: the current lr level, the counters,
and the last estimate. The Trainer glue measures a ``LineEstimate`` (see ``hf_gen.core``) on a
recompute step and hands it to :meth:`GeNScheduler.apply_estimate`; between recomputes the scheduler
behaves like any other (``step()`` after each optimizer step).

The lr applied at optimizer step ``t`` (0-based) to param group ``i`` is

    level * shape(t) * ratio_i,

where ``ratio_i`` is the group's starting lr over group 0's (the Trainer's decay / no-decay split or
layer-wise lr ratios keep their proportions), ``shape`` is an optional annealing factor
(``decay="linear"``: 1 - t/T; ``"cosine"``: (1 + cos(pi t/T)) / 2; ``"cooldown"``: 1, then 1 - sqrt(u) over the
last ``COOLDOWN_FRACTION`` of the run, ``u`` going from 0 to 1 there), and ``level`` is what GeN moves. With
``warmup_steps = W > 0`` the first ``W`` steps are a warmup, as with the Trainer's own schedules: the lr rises
linearly, ``(t + 1) / (W + 1)`` times the starting lr (one step in rather than from 0), GeN measures nothing, and
from step ``W`` on GeN runs as it would from step 0, with the weights and the optimizer's moments the warmup left; a
decay shape runs over the steps after the warmup (``t`` from ``W``, ``T`` less ``W``). An update
turns the raw estimate ``a*`` (in lr units of group 0) into

    target = clip(a*, level / max_change, level * max_change),   level_new = level**gamma * target**(1 - gamma),

clamped to ``[lr_min, lr_max]`` (an unusable estimate has a bound as its target when it says which way to go; see
:func:`next_level`). With ``smooth_by_count`` (the arguments' default with the window lines) the ``k``-th update
after the fast start settles uses ``min(gamma, k / (k + 1))``: the level it settled on counts as one estimate. GeN
sets the level, the shape anneals it (with a shape, the applied lr tracks ``a* * shape(t)``, as in the authors'
examples that scale each new estimate by 1 - t/T). Until the first estimate that falls inside the change bound
("fast start", on by default) the smoothing is skipped and
the lr is recomputed every step, so a start that is orders of magnitude off reaches the estimate in a few
steps instead of never. Within such a step the line may also have been searched (``hf_gen.core.search_line``);
the estimate then comes with the distance it was measured at, and the change bound is taken around it.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LRScheduler

from .core import LineEstimate, SearchRules, minimiser_beyond

__all__ = [
    "FALLBACK_POLICIES",
    "DECAY_SHAPES",
    "COOLDOWN_FRACTION",
    "GEN_SETTINGS",
    "GeNEstimateError",
    "GeNScheduler",
    "line_gamma",
    "next_level",
]

FALLBACK_POLICIES = ("keep", "shrink", "error")
DECAY_SHAPES = ("none", "linear", "cosine", "cooldown")
# "cooldown": the share of the run at its end over which the shape falls from 1 to 0 as 1 - sqrt(u). The value and the
# form are those Hagele et al. found to match a cosine schedule's final loss (arXiv:2405.18392, NeurIPS 2024); they
# were not fitted here.
COOLDOWN_FRACTION = 0.2
#: The scheduler's settings; each is ``gen_<name>`` in ``GeNTrainingArguments``, with the same default.
GEN_SETTINGS = (
    "interval",
    "max_interval",
    "gamma",
    "max_change",
    "lr_min",
    "lr_max",
    "fallback",
    "fast_start",
    "fast_decrease",
    "lower_at_once",
    "smooth_by_count",
    "decay",
)


def line_gamma(gamma: float, span: int, interval: int, noisy: bool = False) -> float:
    """The smoothing of one line measured over ``span`` optimizer steps, from ``gamma``, the smoothing of a one-step
    line every ``interval`` steps.

    ``noisy=False``: ``gamma ** (span / interval)``, the same memory in steps. The level forgets at the same pace
    whatever the lines' spacing, as if each line were exact and only the lr that works moved; a line every twentieth of
    a 3,000-step run then gets a weight of ``1 - 0.9 ** 37.5``, about 0.98: one batch decides the level for 150 steps.

    ``noisy=True``: the steady-state Kalman gain of a level that drifts as a random walk (variance ``q`` per step, in
    log lr) and is measured once per line with noise of its own (variance ``r``, one batch's, whatever the line's
    span). With a measurement every ``s`` steps the gain ``K`` solves ``K**2 / (1 - K) = (q / r) * s``, and the
    smoothing is ``1 - K``. ``q / r`` is not a new constant: it is fixed by ``K = 1 - gamma`` at ``s = interval``, so
    one-step lines every ``interval`` steps are smoothed by ``gamma`` as before. Longer spans weigh a line more, but
    only as the square root of the span once the drift dominates, not toward 1 (``gamma=0.9``, ``interval=4``: 0.86 at
    8 steps, 0.82 at 15, 0.53 at 150).
    """
    if not noisy:
        return gamma ** (span / interval)
    gain = 1.0 - gamma
    if gain >= 1.0:  # gamma = 0: no smoothing at any span
        return 0.0
    ratio = gain * gain / (1.0 - gain) * (span / interval)  # (q / r) * span
    # The positive root of K**2 + ratio * K - ratio = 0, written without the cancellation of -ratio + sqrt(...)
    return 1.0 - 2.0 * ratio / (ratio + math.sqrt(ratio * ratio + 4.0 * ratio))


def next_level(
    level: float,
    estimate: LineEstimate,
    *,
    gamma: float,
    max_change: float,
    lr_min: float = 0.0,
    lr_max: float = math.inf,
    fallback: str = "keep",
    fast_decrease: bool = False,
    settled: bool = True,
    lower_at_once: bool = False,
) -> tuple[float, str | None, bool]:
    """The GeN update of the lr level: every outcome of a measurement becomes a target, and the level moves toward it.

    The target is the estimate ``a*`` clipped to ``[level / max_change, level * max_change]`` (and replaced by
    ``lr_min``/``lr_max`` outside them). An estimate that is not usable mostly still says which way to go, and its
    target is then a bound: a slope that is not positive (the step did not lower the loss; a quadratic with no
    descent along ``d`` is minimised at 0) or a non-finite loss (the probe overshot) point down, to
    ``level / max_change``; non-positive curvature along a descent direction (the loss falls at least linearly:
    the minimiser lies further out) points up, to ``level * max_change``. A step that moved the loss by less than
    its precision resolves (``"below_precision"``) says nothing about a settled level, which it keeps (late in a
    decayed run the applied lr is small by design); before the level has settled (``settled=False``, the fast start)
    it says the lr is too small to measure, and points up: rounding does not grow with the step, the change does. A
    window taken back (``"lost_window"``, ``gen_undo_lost_windows``) points down and is taken at once, like a
    non-finite loss. Only numerical trouble (a non-finite slope or curvature) is left to ``fallback``: ``"keep"`` the
    level or ``"shrink"`` toward the lower bound.

    The level moves geometrically, ``level_new = level**gamma * target**(1 - gamma)``: a learning rate is a scale,
    so a halving and a doubling cancel, and noise that lands as often above the level as below it does not move it.
    A non-finite loss is taken at once (no smoothing): the current level already overshot. With ``lower_at_once``
    every target below the level is taken at once too (within the change bound); only raises are smoothed.

    Returns:
        ``(level_new, reason, inside)``: ``reason`` is ``None`` or the tag recorded as a fallback (the estimate's
        reason, ``"above_max"`` or ``"below_min"``); ``inside`` says whether the raw estimate landed within the
        per-update bound (what ends the fast start).
    """
    low, high = level / max_change, level * max_change
    reason, inside = estimate.reason, False
    if estimate.accepted:
        alpha = estimate.alpha_star
        if alpha > lr_max:
            alpha, reason = lr_max, "above_max"
        elif alpha < lr_min:
            alpha, reason = lr_min, "below_min"
        target = min(alpha, high) if fast_decrease else min(max(alpha, low), high)
        inside = low <= estimate.alpha_star <= high
    elif reason in ("nonfinite_loss", "lost_window"):
        target, gamma = low, 0.0
    elif minimiser_beyond(estimate):
        target = high
    elif reason == "below_precision":
        target = level if settled else high
    elif reason == "not_descent":
        target = low
    else:
        target = low if fallback == "shrink" else level
    if not target > 0.0:  # an unbounded change (max_change=inf) has no lower bound to move toward: keep the level
        target = level
    if lower_at_once and target < level:
        gamma = 0.0
    new = level if target == level else math.exp(gamma * math.log(level) + (1.0 - gamma) * math.log(target))
    return min(max(new, lr_min), lr_max), reason, inside


class GeNEstimateError(RuntimeError):
    """Raised on an unusable estimate when the fallback policy is ``"error"``."""


class GeNScheduler(LRScheduler):
    """Learning rates chosen by the generalized Newton's method.

    Args:
        optimizer: The optimizer whose param groups are scheduled. Group 0's starting lr is the first
            lr and the first probe distance; the other groups keep their ratio to it.
        interval: Recompute every ``interval`` optimizer steps (the first step always recomputes).
        max_interval: Adaptive recompute: the longest gap between recomputes. After a settled update whose estimate
            lands inside the change bound (the lr is steady), the gap doubles, up to ``max_interval``; any other
            outcome (a clipped estimate, a fallback) sets it back to ``interval``. ``None`` (or equal to
            ``interval``): a fixed interval.
        gamma: Smoothing of the lr, in ``[0, 1)``: the weight of the old lr in each (geometric) update (at most
            ``k / (k + 1)`` on the ``k``-th settled update with ``smooth_by_count``).
        max_change: Each new estimate is clipped to ``[lr / max_change, lr * max_change]`` (>= 1).
        lr_min: Absolute lower bound on group 0's lr.
        lr_max: Absolute upper bound on group 0's lr.
        fallback: What an estimate does that says nothing about the lr (a non-finite slope or curvature):
            ``"keep"`` the lr or move it toward ``lr / max_change`` (``"shrink"``); ``"error"`` raises on any
            unusable estimate. The other unusable estimates have a direction (:func:`next_level`): no descent or a
            non-finite loss move the lr down, non-positive curvature along a descent direction moves it up.
        fast_start: Skip smoothing and recompute every step until an estimate falls inside the change
            bound.
        fast_decrease: Clip only increases: an estimate below ``lr / max_change`` is taken as it is (an
            overshoot is corrected at once; smoothing still applies once settled).
        lower_at_once: Smooth only raises: a target below the level (within the change bound) is taken without
            smoothing. A learning rate too high by some factor costs more than one too low by the same factor (the
            loss rises without bound above the stable lr, and a pretrained model's features, once lost, do not come
            back; too low only slows the run), so with noisy estimates the level should err low. Measured, it did not
            hold: on models trained from scratch it cost the lead over a tuned schedule (benchmarks/RESULTS.md).
        smooth_by_count: Once settled, the ``k``-th smoothed update gives its target a weight of at least
            ``1 / (k + 1)``: the level is the geometric mean of the level it settled at and the targets since, until
            ``gamma``'s own weight is larger. The level the fast start settles at is one estimate, not the mean of
            many; folding the first settled estimates in with ``1 - gamma`` weighs it as if it were the mean of about
            ``1 / (1 - gamma)`` of them (the same correction as Adam's for its moments' start, here for a start at one
            sample rather than at zero). Without a fast start the starting lr is that first sample. Off here, as
            for the one-step estimates this scheduler takes alone; ``GeNTrainingArguments`` turns it on with the
            window lines.
        decay: Annealing shape composed with the GeN level: ``"none"``, ``"linear"``, ``"cosine"`` or ``"cooldown"``
            (constant, then ``1 - sqrt`` over the last ``COOLDOWN_FRACTION`` of the run).
        warmup_steps: A linear warmup before GeN, over this many optimizer steps (the Trainer's ``warmup_steps``,
            resolved to steps): the lr is the starting lr times ``(t + 1) / (W + 1)`` until step ``W``, and nothing is
            measured (:meth:`is_due` is false); GeN's first step is step ``W`` (:attr:`first_step`). A line measured
            on steps the warmup damped would read them as too short, and a fast start on it climbs by its fallbacks,
            so the warmup is left out of every line. 0: no warmup.
        num_training_steps: Total optimizer steps (needed by ``decay``).
        last_epoch: As in ``LRScheduler``.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        interval: int = 4,
        max_interval: int | None = None,
        gamma: float = 0.9,
        max_change: float = 2.0,
        lr_min: float = 0.0,
        lr_max: float = 1.0,
        fallback: str = "keep",
        fast_start: bool = True,
        fast_decrease: bool = False,
        lower_at_once: bool = False,
        smooth_by_count: bool = False,
        decay: str = "cosine",
        num_training_steps: int | None = None,
        warmup_steps: int = 0,
        last_epoch: int = -1,
    ) -> None:
        settings = locals()
        validate_gen_settings(**{name: settings[name] for name in GEN_SETTINGS})
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise ValueError(
                f"warmup_steps must be a whole number of optimizer steps >= 0 (0: no warmup), got {warmup_steps!r}"
            )
        if decay != "none" and (num_training_steps is None or num_training_steps < 1):
            raise ValueError(
                f"decay={decay!r} needs num_training_steps >= 1 (the horizon it anneals over), got "
                f"{num_training_steps!r}; pass num_training_steps, or decay='none'"
            )
        first_lr = float(optimizer.param_groups[0].get("initial_lr", optimizer.param_groups[0]["lr"]))
        if not first_lr > 0.0 or not math.isfinite(first_lr):
            raise ValueError(
                f"GeN needs a positive starting learning rate (param group 0 has lr={first_lr}); "
                "pass learning_rate > 0: it is the first lr and the first probe distance"
            )
        self.interval = int(interval)
        self.max_interval = int(max_interval) if max_interval is not None else self.interval
        self.gap = self.interval  # the interval in force once settled (adaptive: between interval and max_interval)
        self.gamma = float(gamma)
        self.max_change = float(max_change)
        self.lr_min = float(lr_min)
        self.lr_max = float(lr_max)
        self.fallback = fallback
        self.fast_start = bool(fast_start)
        self.fast_decrease = bool(fast_decrease)
        self.lower_at_once = bool(lower_at_once)
        self.smooth_by_count = bool(smooth_by_count)
        self.smoothed = 0  # settled updates folded in so far (smooth_by_count)
        self.decay = decay
        self.num_training_steps = int(num_training_steps) if num_training_steps is not None else None
        self.warmup_steps = warmup_steps
        self.ratios = [float(group.get("initial_lr", group["lr"])) / first_lr for group in optimizer.param_groups]
        self.level = min(max(first_lr, self.lr_min), self.lr_max)
        self.settled = not self.fast_start
        self.last_update_step: int | None = None
        self.num_updates = 0
        self.num_fallbacks = 0
        self.last_alpha_star: float | None = None
        self.last_curvature: float | None = None
        self.last_fallback: str | None = None
        self.last_update_lr: float | None = None
        # The level after the last window taken back (gen_undo_lost_windows): a level at which the run lost ground is
        # not tried again, so the level stays at or below it from then on.
        self.undo_ceiling = math.inf
        super().__init__(optimizer, last_epoch)

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a saved scheduler. Its saved settings are the run's: a checkpoint saved by an hf-gen release before
        ``smooth_by_count`` smoothed plainly, and resumes so (the option off, its count at 0); one saved before the
        warmup could be composed had none."""
        super().load_state_dict({"smooth_by_count": False, "smoothed": 0, "warmup_steps": 0, **state_dict})

    # ---- schedule ----------------------------------------------------------------------------

    @property
    def first_step(self) -> int:
        """GeN's first optimizer step (0-based): the first after the warmup, if any."""
        return self.warmup_steps

    def rise(self, step: int) -> float:
        """The warmup's factor at 0-based optimizer step ``step``: ``(step + 1) / (W + 1)`` up to 1 (1 without one)."""
        return min((max(step, 0) + 1) / (self.warmup_steps + 1), 1.0)

    def shape(self, step: int) -> float:
        """The annealing factor at 0-based optimizer step ``step``: the warmup's rise times the decay's shape."""
        return self.rise(step) * self._decay(step)

    def _decay(self, step: int) -> float:
        """The decay shape at 0-based optimizer step ``step``, over the steps after the warmup."""
        if self.decay == "none":
            return 1.0
        span = self.num_training_steps - self.warmup_steps
        progress = min(max(step - self.warmup_steps, 0) / span, 1.0) if span > 0 else 0.0
        if self.decay == "linear":
            return max(1.0 - progress, 0.0)
        if self.decay == "cooldown":
            start = 1.0 - COOLDOWN_FRACTION
            return 1.0 if progress <= start else max(1.0 - math.sqrt((progress - start) / COOLDOWN_FRACTION), 0.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    def lr_at(self, step: int) -> float:
        """Group 0's lr at 0-based optimizer step ``step`` with the current level."""
        return self.level * self.shape(step)

    def get_lr(self) -> list[float]:
        lr = self.lr_at(self.last_epoch)
        return [lr * ratio for ratio in self.ratios]

    @property
    def interval_in_force(self) -> int:
        """Optimizer steps between recomputes now: 1 until the fast start has settled, then the adaptive gap (always
        ``interval`` without ``max_interval``)."""
        return self.gap if self.settled else 1

    def is_due(self, step: int) -> bool:
        """Whether optimizer step ``step`` (0-based) should recompute the lr (never during the warmup)."""
        if step < self.first_step:
            return False
        if self.last_update_step is None:
            return True
        return step - self.last_update_step >= self.interval_in_force

    # ---- updates -----------------------------------------------------------------------------

    def search_rules(self, max_probes: int) -> SearchRules | None:
        """The rules of the fast start's search along a line (``hf_gen.core.search_line``); ``None`` once settled."""
        if self.settled or max_probes <= 0:
            return None
        return SearchRules(self.max_change, self.lr_min, self.lr_max, max_probes)

    def apply_estimate(
        self,
        estimate: LineEstimate,
        step: int,
        at: float | None = None,
        ceiling: float | None = None,
        gamma: float | None = None,
        cap: float | None = None,
        cap_settles: bool = True,
        measured_at: float | None = None,
    ) -> float:
        """Fold one estimate into the lr and apply it to the optimizer's param groups.

        Args:
            estimate: The estimate measured on the batch of step ``step``, in lr units of group 0.
            step: The 0-based optimizer step whose batch was probed.
            at: The distance along the line (lr units of group 0, like ``a*``) at which the line was probed, when
                a search moved the probe away from the step's own lr (``LineResult.at``). The change bound is taken
                around it (an estimate is trusted near where it was measured); by default it is the current level.
            ceiling: A distance the step must stay short of (a searched probe there did not lower the loss or
                gave a non-finite one); the new level is capped at ``ceiling / sqrt(max_change) / shape(step)``.
            gamma: The smoothing of this update, when not the scheduler's own (an estimate that spans several
                intervals, ``gen_probe_batch="averages"``, is smoothed per interval like the one-step estimates).
            cap: An upper bound on the new level from a second line (the averages scheme's fast start: the last step's
                line caps how far the window's line may raise the level). A level held at it has settled, if
                ``cap_settles``: a cap from a line that gave no estimate of its own (a fallback's bound) holds the
                level without ending the fast start.
            measured_at: The level the measured steps ran at, if given. It may differ from the level now (a line
                through two windows' means is in units of the lr its steps were walked at, ``gen_pace_unit``, which
                lags the level after a fast-start climb): the estimate is in lr units and the level moves from where
                it is now, but it lands "inside" (ending the fast start) when it is within the change bound of the
                level it measured.

        A ``"lost_window"`` estimate (a window taken back, ``gen_undo_lost_windows``) is a decision, not an unusable
        measurement: ``fallback="error"`` does not raise on it. The level it sets is a ceiling for the rest of the run
        (``undo_ceiling``): a level at which the run lost ground is not tried again.

        Returns:
            Group 0's new lr, which the caller uses for the step being taken.

        Raises:
            GeNEstimateError: On an unusable estimate (other than ``"lost_window"``) with ``fallback="error"``.
        """
        if not estimate.accepted and self.fallback == "error" and estimate.reason != "lost_window":
            raise GeNEstimateError(
                f"GeN estimate unusable at step {step + 1} ({estimate.reason}: slope={estimate.slope}, "
                f"curvature={estimate.curvature}); set gen_fallback='keep' or 'shrink' to train on"
            )
        was_settled = self.settled
        new_lr, reason, inside = self._fold(estimate, at, gamma)
        if measured_at is not None:
            low, high = measured_at / self.max_change, measured_at * self.max_change
            inside = estimate.accepted and low <= estimate.alpha_star <= high
        if cap is not None and new_lr > cap:
            new_lr, inside = cap, inside or cap_settles
        self.gap = self._next_gap(self.settled and inside and reason is None)
        if inside:
            self.settled = True
        if ceiling is not None and self.shape(step) > 0.0:
            new_lr = min(new_lr, ceiling / math.sqrt(self.max_change) / self.shape(step))
        self.level = min(max(min(new_lr, self.undo_ceiling), self.lr_min), self.lr_max)
        if estimate.reason == "lost_window":
            self.undo_ceiling = min(self.undo_ceiling, self.level)
        self.last_update_step = step
        self.num_updates += 1
        self.smoothed += was_settled
        self.num_fallbacks += reason is not None
        self.last_alpha_star = estimate.alpha_star
        self.last_curvature = float(estimate.curvature)
        self.last_fallback = reason
        return self._apply(step)

    def _fold(self, estimate: LineEstimate, at: float | None, gamma: float | None) -> tuple[float, str | None, bool]:
        """:func:`next_level` with this scheduler's settings, around ``at`` (by default the level)."""
        lr = self.level  # GeN moves the level; the decay shape (if any) anneals what is applied
        if at is not None:
            lr = min(max(at, self.lr_min), self.lr_max)
        gamma = (self.gamma if gamma is None else gamma) if self.settled else 0.0
        if self.smooth_by_count and self.settled:
            gamma = min(gamma, (self.smoothed + 1) / (self.smoothed + 2))  # the (smoothed + 1)-th: at least 1/(k+1)
        return next_level(
            lr,
            estimate,
            gamma=gamma,
            max_change=self.max_change,
            lr_min=self.lr_min,
            lr_max=self.lr_max,
            fallback=self.fallback,
            fast_decrease=self.fast_decrease,
            settled=self.settled,
            lower_at_once=self.lower_at_once,
        )

    def preview(self, estimate: LineEstimate, at: float | None = None, gamma: float | None = None) -> float:
        """The level :meth:`apply_estimate` would set from ``estimate`` (without a ceiling); nothing changes."""
        return self._fold(estimate, at, gamma)[0]

    def _next_gap(self, steady: bool) -> int:
        """The adaptive gap after an update: doubled (up to ``max_interval``) after a steady one, else ``interval``.

        Steady: a settled update (not the fast start's) whose estimate was usable, needed no bound and landed inside
        the per-update change bound, so it moved the level by at most ``(1 - gamma) * log(max_change)`` on a log
        scale: the same test that ends the fast start.
        """
        return min(2 * self.gap, self.max_interval) if steady else self.interval

    def restart(self, lr: float, step: int, reason: str) -> float:
        """Set the applied lr of group 0 at ``step`` to ``lr`` outright (a step found to overshoot), recorded as a
        fallback with ``reason``; the fast start goes on. Returns the applied lr."""
        shape = self.shape(step)
        self.level = min(max(lr / shape if shape > 0.0 else lr, self.lr_min), self.lr_max)
        self.gap = self.interval
        self.last_update_step = step
        self.num_updates += 1
        self.num_fallbacks += 1
        self.last_alpha_star, self.last_curvature, self.last_fallback = None, math.nan, reason
        return self._apply(step)

    def _apply(self, step: int) -> float:
        applied = self.lr_at(step)
        self.last_update_lr = applied
        for group, ratio in zip(self.optimizer.param_groups, self.ratios, strict=True):
            group["lr"] = applied * ratio
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]
        return applied


def validate_gen_settings(
    *,
    interval: int,
    max_interval: int | None,
    gamma: float,
    max_change: float,
    lr_min: float,
    lr_max: float,
    fallback: str,
    fast_start: bool,
    fast_decrease: bool,
    decay: str,
    lower_at_once: bool = False,
    smooth_by_count: bool = False,
) -> None:
    """Check the scheduler's settings (``GEN_SETTINGS``); raise ``ValueError`` saying what to pass instead."""
    flags = (
        ("gen_fast_start", fast_start),
        ("gen_fast_decrease", fast_decrease),
        ("gen_lower_at_once", lower_at_once),
        ("gen_smooth_by_count", smooth_by_count),
    )
    for name, value in flags:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be True or False, got {value!r}")
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
        raise ValueError(f"gen_interval must be an integer >= 1 (recompute every N optimizer steps), got {interval!r}")
    if max_interval is not None and (
        isinstance(max_interval, bool) or not isinstance(max_interval, int) or max_interval < interval
    ):
        raise ValueError(
            f"gen_max_interval must be None (a fixed interval) or an integer >= gen_interval ({interval}), the "
            f"longest gap between recomputes, got {max_interval!r}"
        )
    if not (isinstance(gamma, (int, float)) and 0.0 <= gamma < 1.0):
        raise ValueError(f"gen_gamma must be in [0, 1) (0.9 is the authors' choice; 0 = no smoothing), got {gamma!r}")
    if not (isinstance(max_change, (int, float)) and max_change >= 1.0):
        raise ValueError(
            "gen_max_change must be >= 1 (2.0 clips each estimate to [lr/2, 2 lr]; inf = no bound), "
            f"got {max_change!r}"
        )
    for name, value in (("gen_lr_min", lr_min), ("gen_lr_max", lr_max)):
        if not isinstance(value, (int, float)) or math.isnan(value) or value < 0.0:
            raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    if lr_min > lr_max:
        raise ValueError(f"gen_lr_min ({lr_min}) must not exceed gen_lr_max ({lr_max})")
    if lr_max == 0.0:
        raise ValueError("gen_lr_max must be > 0 (use inf for no upper bound)")
    if math.isinf(max_change) and math.isinf(lr_max):
        raise ValueError(
            "gen_max_change=inf with gen_lr_max=inf leaves the lr unbounded (a non-positive-curvature fallback would "
            "grow it to inf): pass a finite gen_max_change (e.g. 2.0) or a finite gen_lr_max"
        )
    if fallback not in FALLBACK_POLICIES:
        raise ValueError(f"gen_fallback must be one of {FALLBACK_POLICIES}, got {fallback!r}")
    if decay not in DECAY_SHAPES:
        raise ValueError(f"gen_decay must be one of {DECAY_SHAPES}, got {decay!r}")
