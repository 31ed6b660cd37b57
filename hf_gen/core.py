"""The maths of the generalized Newton's method (GeN), free of any training framework.

Bu & Xu, "Gradient descent with generalized Newton's method", arXiv:2407.02772 (ICLR 2025).

Along the optimizer's update direction ``d`` (the step it takes per unit learning rate), the loss
is a function of one variable, ``g(a) = L(theta - a d)``. Its second-order model

    g(a) ~= g(0) - slope * a + curvature * a**2 / 2,   slope = <grad L, d>,   curvature = d^T H d,

is minimised at ``a* = slope / curvature`` when ``curvature > 0``. Exact GeN obtains the curvature
from a Hessian-vector product; approximate GeN fits the parabola to loss values at a few points
``a_k`` on the line (the slope and ``g(0)`` are known from the training forward and backward, so one
extra point determines the parabola).

This module only turns numbers into a step size. It imports torch alone and keeps all arithmetic in
float64 on the host.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

__all__ = ["LineEstimate", "estimate_from_curvature", "estimate_from_losses", "fit_parabola"]


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
            ``"nonpositive_curvature"`` or ``"nonfinite_estimate"``.
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
