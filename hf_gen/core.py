"""The maths of the generalized Newton's method (GeN), free of any training framework.

Bu & Xu, "Gradient descent with generalized Newton's method", arXiv:2407.02772 (ICLR 2025).

Along the optimizer's update direction ``d`` (the step it takes per unit learning rate), the loss
is a function of one variable, ``g(a) = L(theta - a d)``. Its second-order model

    g(a) ~= g(0) - slope * a + curvature * a**2 / 2,   slope = <grad L, d>,   curvature = d^T H d,

is minimised at ``a* = slope / curvature`` when ``curvature > 0``. Exact GeN obtains the curvature
from a Hessian-vector product; approximate GeN fits the parabola to loss values at a few points
``a_k`` on the line (the slope and ``g(0)`` are known from the training forward and backward, so one
extra point determines the parabola).

Every position on the line is a distance ``a`` in the units of the learning rate of param group 0: the optimizer's
step at lr ``a0`` lands at ``a = a0``, and the lr GeN picks is a point ``a`` of the same line.

This module only turns losses into a step size. The whole decision for one line is :func:`measure_line`: it takes
``g`` as a callable (the Trainer glue moves the weights and runs the forward), the loss and slope known at one point
from the training forward and backward, and returns a :class:`LineResult` with the estimate, every probe and where
the estimate may be trusted. The fast start's search (:func:`search_line`) and the first step's cut-back
(:func:`cut_back`) are probes of the same ``g``. It imports torch alone (for the least-squares fit) and keeps all
arithmetic in float64 on the host.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch

__all__ = [
    "LineEstimate",
    "LineResult",
    "SearchRules",
    "charge_jitter",
    "cut_back",
    "estimate_from_curvature",
    "estimate_from_losses",
    "fit_line",
    "fit_parabola",
    "jitter_cost",
    "line_pace",
    "lost_ground",
    "measure_line",
    "next_probe",
    "no_descent_seen",
    "search_line",
    "WindowStats",
    "LOST_WINDOW_Z",
]

#: ``g(a)``: the loss (reduced over processes, normalised like the training loss) at distance ``a`` along the line, as
#: a float or a 0-d tensor.
LineOracle = Callable[[float], float]


class LineEstimate(NamedTuple):
    """The outcome of one GeN estimate along a line.

    Attributes:
        alpha_star: The minimiser ``slope / curvature`` of the quadratic model, or ``None`` when it is
            undefined (non-positive curvature, not a descent direction, non-finite numbers).
        slope: ``<grad L, d>``: minus the derivative of ``g`` at 0. Positive for a descent direction.
        curvature: ``d^T H d``: the second derivative of ``g`` at 0.
        loss0: ``g(0)``, the loss at the current weights, when known.
        accepted: Whether ``alpha_star`` is usable.
        reason: ``None`` when accepted, otherwise a short tag: ``"nonfinite_loss"``,
            ``"nonfinite_slope"``, ``"nonfinite_curvature"``, ``"not_descent"``,
            ``"nonpositive_curvature"``, ``"nonfinite_estimate"``, ``"below_precision"`` (the step moved the loss
            by less than the precision it is computed in can resolve: see :func:`fit_line`).
    """

    alpha_star: float | None
    slope: float
    curvature: float
    loss0: float | None
    accepted: bool
    reason: str | None


def estimate_from_curvature(slope: float, curvature: float, loss0: float | None = None) -> LineEstimate:
    """The GeN step size ``a* = slope / curvature`` with its guards.

    Args:
        slope: ``<grad L, d>`` for the update direction ``d`` (per unit learning rate).
        curvature: ``d^T H d``.
        loss0: Loss at the current weights, carried into the result for the record.

    Returns:
        A ``LineEstimate``; ``accepted`` is ``False`` (with a reason) unless ``slope > 0``,
        ``curvature > 0`` and the ratio is finite.
    """
    slope, curvature = float(slope), float(curvature)
    if not math.isfinite(slope):
        return LineEstimate(None, slope, curvature, loss0, False, "nonfinite_slope")
    if not math.isfinite(curvature):
        return LineEstimate(None, slope, curvature, loss0, False, "nonfinite_curvature")
    if curvature <= 0.0:
        return LineEstimate(None, slope, curvature, loss0, False, "nonpositive_curvature")
    if slope <= 0.0:
        return LineEstimate(None, slope, curvature, loss0, False, "not_descent")
    alpha = slope / curvature
    if not math.isfinite(alpha) or alpha <= 0.0:
        return LineEstimate(None, slope, curvature, loss0, False, "nonfinite_estimate")
    return LineEstimate(alpha, slope, curvature, loss0, True, None)


def fit_parabola(
    offsets: Sequence[float],
    losses: Sequence[float],
    loss0: float | None = None,
    slope: float | None = None,
) -> tuple[float, float, float]:
    """Least-squares fit of ``g(a) = loss0 - slope * a + curvature * a**2 / 2`` to points on the line.

    Known coefficients are held fixed; the others are fitted. With ``loss0`` and ``slope`` known one
    point determines the curvature; with neither, three distinct points do (the classic symmetric
    scheme is ``offsets = (-h, 0, h)``).

    Args:
        offsets: Step sizes ``a_k`` at which the loss was measured.
        losses: ``g(a_k)``.
        loss0: ``g(0)`` if known.
        slope: ``<grad L, d>`` if known.

    Returns:
        ``(loss0, slope, curvature)``, fitted where not given.

    Raises:
        ValueError: When there are fewer distinct points than unknowns.
    """
    a = torch.tensor([float(x) for x in offsets], dtype=torch.float64)
    y = torch.tensor([float(x) for x in losses], dtype=torch.float64)
    if a.shape != y.shape or a.numel() == 0:
        raise ValueError(f"need as many losses as offsets (got {a.numel()} offsets, {y.numel()} losses)")
    columns, names = [], []
    if loss0 is None:
        columns.append(torch.ones_like(a))
        names.append("loss0")
    else:
        y = y - float(loss0)
    if slope is None:
        columns.append(-a)
        names.append("slope")
    else:
        y = y + float(slope) * a
    columns.append(a * a / 2.0)
    names.append("curvature")
    if torch.unique(a).numel() < len(columns):
        raise ValueError(
            f"fitting {', '.join(names)} needs at least {len(columns)} distinct offsets, got {a.tolist()}"
        )
    design = torch.stack(columns, dim=1)
    if not bool(torch.isfinite(y).all()):
        solution = torch.full((len(columns),), float("nan"), dtype=torch.float64)
    else:
        solution = torch.linalg.lstsq(design, y.unsqueeze(1), driver="gelsd").solution.squeeze(1)
    fitted = dict(zip(names, solution.tolist(), strict=True))
    return (
        float(loss0) if loss0 is not None else fitted["loss0"],
        float(slope) if slope is not None else fitted["slope"],
        fitted["curvature"],
    )


def estimate_from_losses(
    offsets: Sequence[float],
    losses: Sequence[float],
    loss0: float | None = None,
    slope: float | None = None,
) -> LineEstimate:
    """Approximate GeN: fit the parabola to measured losses and return its minimiser.

    Args:
        offsets: Step sizes ``a_k`` at which the loss was measured (0 may be among them).
        losses: ``g(a_k)``.
        loss0: ``g(0)``, if known from the training forward.
        slope: ``<grad L, d>``, if known from the backward pass.

    Returns:
        A ``LineEstimate`` with the fitted slope and curvature; ``reason="nonfinite_loss"`` if any
        measured loss is not finite.
    """
    values = [float(x) for x in losses] + ([float(loss0)] if loss0 is not None else [])
    if not all(math.isfinite(v) for v in values):
        return LineEstimate(
            None,
            float("nan") if slope is None else float(slope),
            float("nan"),
            loss0,
            False,
            "nonfinite_loss",
        )
    fitted_loss0, fitted_slope, curvature = fit_parabola(offsets, losses, loss0=loss0, slope=slope)
    return estimate_from_curvature(fitted_slope, curvature, loss0=fitted_loss0)


def fit_line(
    points: Sequence[float],
    losses: Sequence[float],
    *,
    known_at: float = 0.0,
    loss: float | None = None,
    slope: float | None = None,
    precision: float = 0.0,
) -> LineEstimate:
    """Approximate GeN from probes of ``g`` and what the training step knows about it at one point.

    The training forward and backward give the loss and the slope at one point of the line: at ``a = 0`` when the
    line is measured on the batch that made the step (the weights before the step), at ``a = a0`` when it is
    measured on the next batch (the weights the step reached). The parabola through them and the probes is
    minimised, and the estimate is returned as a distance from ``a = 0``.

    Args:
        points: Where ``g`` was probed.
        losses: ``g`` at ``points``.
        known_at: Where ``loss`` and ``slope`` were measured.
        loss: ``g(known_at)``, if known.
        slope: ``-g'(known_at)``, if known (required when ``known_at != 0``).
        precision: The smallest change of the loss its precision resolves, relative to the loss: at most the unit
            roundoff of the dtype it is computed in (``torch.finfo(dtype).eps / 2``), less for a loss averaged over
            many terms (the Trainer glue: ``GeNMixin._gen_precision``). When both the change the slope predicts over
            the probed span and every measured change are within ``precision * |loss|``, the probes hold rounding,
            not curvature: the estimate is refused as ``"below_precision"``. ``0`` turns the check off.

    Returns:
        A ``LineEstimate``: ``slope`` and ``loss0`` are those at ``a = 0`` (``loss0`` is ``None`` when ``g(0)`` was
        neither known nor probed); ``reason="nonfinite_loss"`` if any loss is not finite.
    """
    if precision > 0.0 and loss is not None and slope is not None and points:
        resolution = precision * abs(float(loss))
        span = max(abs(a - known_at) for a in points)
        change = max(abs(float(v) - float(loss)) for v in losses)
        if abs(float(slope)) * span <= resolution and change <= resolution:
            loss0 = float(loss) if known_at == 0.0 else None
            return LineEstimate(None, float(slope), math.nan, loss0, False, "below_precision")
    if known_at == 0.0:
        return estimate_from_losses(points, losses, loss0=loss, slope=slope)
    if loss is None or slope is None:
        raise ValueError(f"a line known at a = {known_at} needs both the loss and the slope there")
    loss0 = next((float(v) for a, v in zip(points, losses, strict=True) if a == 0.0), None)
    if not all(math.isfinite(float(v)) for v in (*losses, loss, slope)):
        return LineEstimate(None, float(slope), math.nan, loss0, False, "nonfinite_loss")
    _, _, curvature = fit_parabola([a - known_at for a in points], losses, loss0=loss, slope=slope)
    return estimate_from_curvature(float(slope) + curvature * known_at, curvature, loss0=loss0)


def line_pace(earlier: Sequence[float], later: Sequence[float], now: Sequence[float]) -> tuple[float, float]:
    """The lr a line through two windows' mean weights was walked at, and where the live weights lie on it.

    The steps' clocks (:class:`hf_gen.line.Pace`) are ``(sum of the lrs, number of steps)`` over the optimizer steps
    taken so far; ``earlier`` and ``later`` are their means over the two windows, ``now`` their value after the last
    step. With ``u_s = lr_s d_s`` the step ``s`` took, the distance between the two means of the weights is
    ``sum_s w_s u_s``, and the same weights ``w_s`` (0 before the earlier window, rising to 1 across it, falling back
    across the later one) make the difference of the clocks' means: ``sum_s w_s lr_s`` and ``sum_s w_s``. So the line
    is the walk of ``sum_s w_s`` steps at their weighted mean lr, the line's unit: ``c`` times it moves the later mean
    ``c`` times as far. At a constant lr that is the lr itself; after a change of the lr between the windows (the fast
    start doubles it) it is a mean of the lrs before and after, not the lr now.

    Returns:
        ``(unit, position)``: the unit, and the live weights' place on the line (``(now - earlier) / (later -
        earlier)`` on the lr clock: the later mean is 1, and the live weights lie past it by the steps since).
    """
    moved, steps = float(later[0]) - float(earlier[0]), float(later[1]) - float(earlier[1])
    return moved / steps, (float(now[0]) - float(earlier[0])) / moved


def jitter_cost(losses: Sequence[float], position: float, loss: float) -> float:
    """What the weights' jitter costs along a line through two windows' mean weights, per unit of the line.

    The line runs through the means at ``c = 0`` and ``c = 1`` and is probed at ``c = 0, 1, 2`` (``losses``). The
    mean of a window averages out the weights' jitter about where the run is, so the parabola through the probes
    is the loss of the steps' progress alone. The live weights carry the jitter: at ``position`` on the line (where
    the progress has brought them) their loss ``loss`` lies above the parabola by the cost. Under a constant lr the
    jitter settles where its excess loss grows in proportion to the lr (for SGD on a quadratic, about
    ``lr tr(H S) / 4`` for a gradient noise covariance ``S``), so steps ``c`` times longer pay ``c`` times the cost
    (:func:`charge_jitter`).

    A cost below zero (the live weights below the parabola: one batch's noise, since jitter about a minimum only
    adds loss) is taken as zero.

    Args:
        losses: The loss at ``c = 0, 1, 2``, on one batch.
        position: Where the live weights sit on the line, in units of the distance between the means.
        loss: Their loss on the same batch.
    """
    g0, g1, g2 = (float(v) for v in losses)
    c = float(position)
    # The parabola through (0, g0), (1, g1), (2, g2), at c (Lagrange's form).
    progress = g0 * (c - 1.0) * (c - 2.0) / 2.0 - g1 * c * (c - 2.0) + g2 * c * (c - 1.0) / 2.0
    excess = float(loss) - progress
    return excess if not excess < 0.0 else 0.0  # a NaN stays NaN (and the fit refuses it)


def charge_jitter(losses: Sequence[float], cost: float) -> list[float]:
    """The losses at ``c = 0, 1, 2`` on a line through two windows' means, each charged with ``c * cost``
    (:func:`jitter_cost`): the minimiser ``c*`` of ``g(c) + c * cost`` trades the progress a longer step buys against
    the jitter it costs, where ``g`` alone sees only the progress. It is ``(slope - cost) / curvature``: below the
    line's own by ``cost / curvature``, and no descent at all when the cost exceeds the slope."""
    return [float(v) + c * float(cost) for c, v in enumerate(losses)]


# ---- the fast start's search and the first step's cut-back -------------------------------------------------------


@dataclass(frozen=True)
class SearchRules:
    """How far the search along one line may go.

    Attributes:
        max_change: The scheduler's per-update bound. An estimate is trusted within ``sqrt(max_change)`` of the point
            it was probed at, and one probe moves at most ``max_change**3``.
        lr_min: The lowest distance probed (the scheduler's lower bound on the lr).
        lr_max: The highest distance probed.
        max_probes: Extra probes allowed on the line.
    """

    max_change: float
    lr_min: float = 0.0
    lr_max: float = math.inf
    max_probes: int = 6

    @property
    def tolerance(self) -> float:
        return math.sqrt(self.max_change)

    @property
    def jump(self) -> float:
        return self.max_change**3


class LineResult(NamedTuple):
    """What :func:`measure_line` decided about one line.

    Attributes:
        estimate: The estimate to apply (for a search: the last usable one before any failed probe).
        at: The distance the estimate was measured at when a search or a cut moved away from the step's own lr
            (the change bound is then taken around it), else ``None``.
        ceiling: A distance the lr must stay short of (a probe there did not lower the loss or gave a non-finite
            one), or ``None``.
        probes: Every ``(a, g(a))`` evaluated, in order.
    """

    estimate: LineEstimate
    at: float | None
    ceiling: float | None
    probes: tuple[tuple[float, float], ...]


def overshot(estimate: LineEstimate, at: float) -> bool:
    """The probe at ``at`` overshot: its loss is not below the loss at 0 (an estimate at most half the distance)."""
    return estimate.accepted and estimate.alpha_star <= at / 2.0


def minimiser_beyond(estimate: LineEstimate) -> bool:
    """Non-positive curvature along a descent direction: the loss falls at least linearly, look further."""
    return estimate.reason == "nonpositive_curvature" and estimate.slope > 0.0


def no_descent_seen(estimate: LineEstimate, probes: Sequence[tuple[float, float]]) -> LineEstimate:
    """A line probed at several points, with no slope known, whose fit is not convex and whose probes nowhere fall
    below its start, did not descend: the estimate is tagged ``"not_descent"`` (the lr goes down) instead of
    ``"nonpositive_curvature"`` (which leaves the lr to the fallback policy).

    A concave parabola has its lowest point on any span at an end, so when no probe lies below ``g(0)``, nothing on
    the probed span does, by the fit: the line does not descend there. ``probes`` are ``(a, g(a))`` with ``a = 0``
    among them. Any other estimate is returned as it is.
    """
    if estimate.reason != "nonpositive_curvature":
        return estimate
    start = next((loss for a, loss in probes if a == 0.0), None)
    if start is None or any(not loss >= start for a, loss in probes if a != 0.0):
        return estimate
    return estimate._replace(reason="not_descent")


def too_short(estimate: LineEstimate) -> bool:
    """The probe moved the loss by less than its precision resolves: the line can only be measured further out."""
    return estimate.reason == "below_precision"


def next_probe(estimate: LineEstimate, at: float, rules: SearchRules) -> float | None:
    """Where to probe the line next after an estimate measured at ``at``; ``None`` to stop.

    A parabola is trusted only near where it was measured, so until an estimate lands within ``sqrt(max_change)``
    of its own probe the line is probed again nearer the minimiser:

    * at the estimate, moving at most ``max_change**3`` per probe;
    * ``max_change**3`` nearer when the probe overshot (its loss is not below the loss at 0: the estimate is at most
      half the distance, and where the loss saturates, as it does far from the minimiser, the parabola through that
      point puts the minimiser near half the distance whatever it really is);
    * ``max_change**3`` further on non-positive curvature along a descent direction, or a probe too short for the
      loss's precision; nearer on a non-finite loss.
    """
    if estimate.accepted:
        alpha = min(max(estimate.alpha_star, rules.lr_min), rules.lr_max)
        if at / rules.tolerance <= alpha <= at * rules.tolerance:
            return None
        target = at / rules.jump if overshot(estimate, at) else min(max(alpha, at / rules.jump), at * rules.jump)
    elif estimate.reason == "nonfinite_loss":
        target = at / rules.jump
    elif minimiser_beyond(estimate) or too_short(estimate):
        target = min(at * rules.jump, rules.lr_max)
    else:
        return None
    target = max(target, rules.lr_min)
    if not target > 0.0 or target == at:
        return None
    return target


def search_line(
    g: LineOracle,
    first: LineEstimate,
    a0: float,
    *,
    loss: float,
    slope: float,
    rules: SearchRules,
    precision: float = 0.0,
) -> LineResult:
    """The fast start's search: probe ``g`` again until an estimate lands near its own probe.

    Each probe refits the parabola from that point alone, with the loss and slope known at 0. A bracket
    ``(low, high)`` keeps what the probes showed: a probe whose estimate lies nearer than itself bounds the minimiser
    from above (and, if it overshot or gave a non-finite loss, is also the ceiling the lr must stay short of); one
    whose estimate lies beyond it, or that found non-positive curvature along a descent direction, bounds it from
    below. A proposal (:func:`next_probe`) outside the bracket is replaced by its geometric middle. Every probe
    that does not stop the search narrows the bracket, so no distance is probed twice; the search stops once the
    bracket is narrower than the trust tolerance or after ``rules.max_probes`` probes.

    Returns:
        The estimate to apply (the last one if usable, else the last usable one short of the ceiling, else the
        last), where it was measured, the ceiling, and the probes made here.
    """
    low, high, ceiling = 0.0, math.inf, math.inf
    best: tuple[LineEstimate, float] | None = None
    estimate, at = first, a0
    probes: list[tuple[float, float]] = []
    while True:
        if overshot(estimate, at) or estimate.reason == "nonfinite_loss":
            ceiling = high = min(high, at)
        elif estimate.accepted and estimate.alpha_star < at:
            high = min(high, at)  # the loss fell, but its parabola puts the minimiser nearer
        elif (estimate.accepted and estimate.alpha_star > at) or minimiser_beyond(estimate) or too_short(estimate):
            low = max(low, at)
        if estimate.accepted and at < ceiling:
            best = (estimate, at)
        if len(probes) >= rules.max_probes:
            break
        target = next_probe(estimate, at, rules)
        if target is not None and not low < target < high:
            if low <= 0.0 or not math.isfinite(high) or high / low <= rules.tolerance:
                target = None  # no bracket to bisect, or one already as narrow as the trust tolerance
            else:
                target = math.sqrt(low * high)
        if target is None:
            break
        value = float(g(target))
        probes.append((target, value))
        estimate, at = fit_line([target], [value], loss=loss, slope=slope, precision=precision), target
    if not estimate.accepted and best is not None:
        estimate, at = best
    return LineResult(estimate, at, ceiling if math.isfinite(ceiling) else None, tuple(probes))


def measure_line(
    g: LineOracle,
    points: Sequence[float],
    *,
    known_at: float = 0.0,
    loss: float | None = None,
    slope: float | None = None,
    search: SearchRules | None = None,
    precision: float | torch.Tensor = 0.0,
) -> LineResult:
    """One GeN measurement of a line: probe ``g`` at ``points``, fit the parabola, and search on if asked.

    Args:
        g: The loss along the line.
        points: Where to probe first (the step's own lr ``a0`` for the default one-probe fit on the same batch;
            ``0`` on the next batch).
        known_at, loss, slope: What the training forward and backward measured (see :func:`fit_line`).
        search: The fast start's rules, or ``None`` for no search. A search needs one probe and a known slope at 0.
        precision: The loss change its precision resolves, relative to the loss (see :func:`fit_line`; it may be a
            0-d tensor, read with the probes); a search goes further out from a probe too short for it.

    Returns:
        A ``LineResult``; ``at`` is ``None`` unless the search probed further.
    """
    measured = [(float(a), g(a)) for a in points]
    # g (and the known loss and slope) may hand back 0-d tensors still being computed on an accelerator: they are read
    # once all the first probes are queued, so the host waits for the device once.
    probes = tuple((a, float(value)) for a, value in measured)
    loss, slope, precision = (None if x is None else float(x) for x in (loss, slope, precision))
    estimate = fit_line([a for a, _ in probes], [v for _, v in probes], known_at=known_at, loss=loss, slope=slope,
                        precision=precision)  # fmt: skip
    if search is None or search.max_probes == 0:
        return LineResult(estimate, None, None, probes)
    if len(points) != 1 or known_at != 0.0 or slope is None or loss is None:
        raise ValueError("the fast start's search refits from one probe with the loss and slope known at 0")
    found = search_line(g, estimate, probes[0][0], loss=loss, slope=slope, rules=search, precision=precision)
    if not found.probes:
        return LineResult(estimate, None, None, probes)
    return found._replace(probes=probes + found.probes)


def cut_back(
    g: LineOracle, loss: float, a0: float, *, factor: float, max_probes: int, precision: float | torch.Tensor = 0.0
) -> LineResult:
    """Cut a step that did not lower the loss even on its own batch: ``a0`` divided by ``factor`` until it does.

    Probes ``g(a0)`` first, then ``a0 / factor``, ... while the loss is not finite or not below ``loss`` (the loss at
    0), at most ``max_probes`` probes; the last cut is taken unprobed. A rise within the loss's precision
    (``precision * |loss|``, see :func:`fit_line`) is rounding, not an overshoot, and passes. Returns the distance
    kept as ``at`` (``a0`` when the step passed) with the probes; the estimate says ``"overshot"`` when the step was
    cut.
    """
    at, probes = a0, []
    for _ in range(max_probes):
        value = float(g(at))
        precision = float(precision)  # read after the probe, which waited for the device anyway
        probes.append((at, value))
        if math.isfinite(value) and (value < loss or (precision > 0.0 and value - loss <= precision * abs(loss))):
            break
        at /= factor
    estimate = LineEstimate(None, math.nan, math.nan, loss, False, "overshot")
    return LineResult(estimate, at, None, tuple(probes))


#: The tail probability GeN accepts of taking back a window that did not lose ground (``gen_undo_lost_windows``), as
#: a normal deviate: that of the three-sigma rule, ``P(Z > 3)``, about once in 740 windows, so about once in 37 runs
#: of the twenty windows the averages scheme measures. Not fitted here.
LOST_WINDOW_Z = 3.0


def student_t_quantile(z: float, dof: float) -> float:
    """The quantile of Student's t with ``dof`` degrees of freedom at the normal quantile ``z``'s tail probability.

    The Cornish-Fisher expansion in ``1 / dof`` (Abramowitz and Stegun, Handbook of Mathematical Functions, 26.7.5),
    to its fourth term. At ``z = 3`` it lies below the exact quantile (more lenient) by 2.3% at 3 degrees of freedom,
    0.7% at 4, 0.11% at 6 and 0.01% at 10; under 3 by more. Infinite ``dof`` gives ``z``.
    """
    if not dof > 0.0:
        return math.inf
    n = float(dof)
    terms = (
        (z**3 + z) / 4.0,
        (5 * z**5 + 16 * z**3 + 3 * z) / 96.0,
        (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384.0,
        (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160.0,
    )
    return z + sum(g / n ** (k + 1) for k, g in enumerate(terms))


class WindowStats(NamedTuple):
    """The training losses of the optimizer steps of one window: their mean, the sample variance of one step's loss
    (of the loss averaged over processes) and how many steps there were. ``settled``: whether the window ran after
    the fast start (the only windows :func:`lost_ground` compares)."""

    mean: float
    var: float
    count: int
    settled: bool = True


def lost_ground(before: WindowStats, after: WindowStats, z: float = LOST_WINDOW_Z) -> tuple[bool, float]:
    """Whether the window ``after`` lost ground on the window ``before`` it: its mean training loss is higher, by
    Welch's test at the one-sided tail probability of ``z`` standard normal deviations.

    The statistic is the difference of the means over ``se = sqrt(var_b / n_b + var_a / n_a)``; with variances
    estimated from a few steps it follows Student's t with the Welch-Satterthwaite degrees of freedom
    ``se**4 / ((var_b / n_b)**2 / (n_b - 1) + (var_a / n_a)**2 / (n_a - 1))``, whose quantile
    (:func:`student_t_quantile`) is the threshold: about ``z`` for long windows, higher for short ones (6.6 at 4
    degrees of freedom). A non-finite mean after a finite one (the run diverged) lost ground too. Windows of fewer
    than two steps, or a ``before`` that is not finite, say nothing. The losses within a window also vary because the
    run moves; that only widens the error, so the test errs toward keeping the window.

    Returns:
        ``(lost, se)``: the verdict and the standard error it used (``nan`` when there is none).
    """
    if before.count < 2 or after.count < 2 or not (math.isfinite(before.mean) and math.isfinite(before.var)):
        return False, math.nan
    if not (math.isfinite(after.mean) and math.isfinite(after.var)):
        return True, math.nan
    parts = (max(before.var, 0.0) / before.count, max(after.var, 0.0) / after.count)
    se = math.sqrt(sum(parts))
    rise = after.mean - before.mean
    if se == 0.0:  # both windows' losses constant
        return rise > 0.0, se
    dof = se**4 / (parts[0] ** 2 / (before.count - 1) + parts[1] ** 2 / (after.count - 1))
    return rise > student_t_quantile(z, dof) * se, se
