"""The framework-free maths against closed forms and an independent least-squares oracle (numpy)."""

import math

import numpy as np
import pytest

from hf_gen.core import (
    charge_jitter,
    estimate_from_curvature,
    estimate_from_losses,
    fit_line,
    fit_parabola,
    jitter_cost,
    line_pace,
    no_descent_seen,
)
from hf_gen.line import Pace


def parabola(loss0, slope, curvature):
    return lambda a: loss0 - slope * a + 0.5 * curvature * a * a


@pytest.mark.parametrize("loss0,slope,curvature", [(2.0, 3.0, 5.0), (0.1, 1e-3, 4e-2), (10.0, 250.0, 1e4)])
def test_one_probe_with_known_slope_recovers_the_parabola(loss0, slope, curvature):
    g = parabola(loss0, slope, curvature)
    a = 0.37 * slope / curvature
    est = estimate_from_losses([a], [g(a)], loss0=loss0, slope=slope)
    assert est.accepted and est.reason is None
    assert est.curvature == pytest.approx(curvature, rel=1e-9)
    assert est.alpha_star == pytest.approx(slope / curvature, rel=1e-9)


def test_symmetric_three_point_scheme_matches_the_seed_formula():
    # The symmetric three-point scheme (Bu & Xu, arXiv:2407.02772):
    # Delta = (h/2) (g(-h) - g(h)) / (g(-h) - 2 g(0) + g(h)), exact on a parabola.
    g = parabola(1.5, 0.8, 3.0)
    h = 0.05
    delta = (h / 2) * (g(-h) - g(h)) / (g(-h) - 2 * g(0) + g(h))
    est = estimate_from_losses([-h, 0.0, h], [g(-h), g(0.0), g(h)])
    assert est.alpha_star == pytest.approx(delta, rel=1e-9)
    assert est.alpha_star == pytest.approx(0.8 / 3.0, rel=1e-9)
    # The same two probes with g(0) known fit the slope too.
    est2 = estimate_from_losses([-h, h], [g(-h), g(h)], loss0=g(0.0))
    assert est2.slope == pytest.approx(0.8, rel=1e-9) and est2.alpha_star == pytest.approx(delta, rel=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_least_squares_over_many_noisy_points_matches_numpy_polyfit(seed):
    rng = np.random.default_rng(seed)
    a = np.linspace(-1.0, 2.0, 7)
    y = 1.0 - 2.0 * a + 1.5 * a * a + 0.01 * rng.standard_normal(a.size)
    c2, c1, c0 = np.polyfit(a, y, 2)
    loss0, slope, curvature = fit_parabola(a.tolist(), y.tolist())
    assert loss0 == pytest.approx(c0, rel=1e-8)
    assert slope == pytest.approx(-c1, rel=1e-8)
    assert curvature == pytest.approx(2 * c2, rel=1e-8)
    # With loss0 and slope held, the curvature is the closed-form least squares sum(r a^2) / sum(a^4) * 2.
    r = y - c0 + (-c1) * a
    _, _, curv_fixed = fit_parabola(a.tolist(), y.tolist(), loss0=c0, slope=-c1)
    assert curv_fixed == pytest.approx(2 * np.sum(r * a * a) / np.sum(a**4), rel=1e-8)


@pytest.mark.parametrize(
    "slope,curvature,reason",
    [
        (1.0, 0.0, "nonpositive_curvature"),
        (1.0, -2.0, "nonpositive_curvature"),
        (-1.0, 2.0, "not_descent"),
        (0.0, 2.0, "not_descent"),
        (math.nan, 2.0, "nonfinite_slope"),
        (1.0, math.inf, "nonfinite_curvature"),
        (1e300, 1e-300, "nonfinite_estimate"),
    ],
)
def test_guards_reject_unusable_estimates(slope, curvature, reason):
    est = estimate_from_curvature(slope, curvature)
    assert not est.accepted and est.alpha_star is None and est.reason == reason


def test_nonfinite_probe_loss_is_reported_not_fitted():
    est = estimate_from_losses([0.1], [math.inf], loss0=1.0, slope=1.0)
    assert not est.accepted and est.reason == "nonfinite_loss"
    est = estimate_from_losses([0.1], [1.0], loss0=math.nan, slope=1.0)
    assert est.reason == "nonfinite_loss"


def test_concave_line_is_flagged():
    g = parabola(1.0, 1.0, -4.0)
    est = estimate_from_losses([0.2], [g(0.2)], loss0=1.0, slope=1.0)
    assert est.curvature == pytest.approx(-4.0) and est.reason == "nonpositive_curvature"


@pytest.mark.parametrize(
    "slope, curvature, reason",
    [
        (-1.0, -0.5, "not_descent"),  # rising over the span: g(1) = 1.75, g(2) = 2, both above g(0) = 1
        (-2.0, -1.0, "not_descent"),  # g(1) = 2.5, g(2) = 3
        (-1.0, -2.0, "nonpositive_curvature"),  # g(1) = 1, but g(2) = -1 lies below g(0): the far end is lowest
        (1.0, -1.0, "nonpositive_curvature"),  # descending: the minimiser lies beyond
    ],
)
def test_a_concave_line_with_no_probe_below_its_start_did_not_descend(slope, curvature, reason):
    # g(a) = 1 - slope a + curvature a^2 / 2 probed at 0, 1 and 2 with nothing known: the fit is exact, and a concave
    # fit is re-tagged "not_descent" exactly when g(1) and g(2) are both at least g(0).
    g = parabola(1.0, slope, curvature)
    probes = [(a, g(a)) for a in (0.0, 1.0, 2.0)]
    est = no_descent_seen(fit_line([a for a, _ in probes], [v for _, v in probes]), probes)
    assert est.reason == reason
    assert est.curvature == pytest.approx(curvature) and not est.accepted


def test_no_descent_seen_leaves_other_estimates_alone():
    g = parabola(1.0, -1.0, 2.0)  # convex and rising at 0: already "not_descent" by the slope
    probes = [(a, g(a)) for a in (0.0, 1.0, 2.0)]
    est = fit_line([a for a, _ in probes], [v for _, v in probes])
    assert no_descent_seen(est, probes) == est
    g = parabola(1.0, 1.0, 1.0)  # convex and descending: accepted
    probes = [(a, g(a)) for a in (0.0, 1.0, 2.0)]
    est = fit_line([a for a, _ in probes], [v for _, v in probes])
    assert est.accepted and no_descent_seen(est, probes) == est


def test_underdetermined_fits_say_what_is_missing():
    with pytest.raises(ValueError, match="distinct offsets"):
        fit_parabola([0.1], [1.0], loss0=1.0)
    with pytest.raises(ValueError, match="as many losses as offsets"):
        fit_parabola([0.1, 0.2], [1.0])


@pytest.mark.parametrize(("position", "excess"), [(1.5, 0.3), (1.375, 0.05), (1.2, 1.5), (1.5, 2.5)])
def test_jitter_charge_moves_the_minimiser_by_the_cost_over_the_curvature(position, excess):
    # g(c) = 3 - 2c + c^2 / 2 (slope 2, curvature 1, minimiser 2). The live weights at `position` lie `excess` above
    # it; charging c * excess makes the minimiser of g(c) + c * excess, (2 - excess) / 1, or no descent past 2.
    def g(c):
        return 3.0 - 2.0 * c + 0.5 * c * c

    cost = jitter_cost([g(0.0), g(1.0), g(2.0)], position, g(position) + excess)
    assert cost == pytest.approx(excess, rel=1e-12)
    charged = charge_jitter([g(0.0), g(1.0), g(2.0)], cost)
    assert charged == pytest.approx([g(0.0), g(1.0) + excess, g(2.0) + 2.0 * excess], rel=1e-12)
    estimate = estimate_from_losses([0.0, 1.0, 2.0], charged)
    if excess < 2.0:
        assert estimate.accepted and estimate.alpha_star == pytest.approx(2.0 - excess, rel=1e-9)
    else:
        assert estimate.reason == "not_descent"


def test_jitter_charge_reads_live_weights_below_the_parabola_as_no_cost():
    # Jitter about a minimum only adds loss: a live loss below the parabola is one batch's noise, charged as zero.
    losses = [2.0, 1.2, 0.9]
    cost = jitter_cost(losses, 1.5, 0.5)
    charged = charge_jitter(losses, cost)
    assert cost == 0.0 and charged == losses
    assert estimate_from_losses([0.0, 1.0, 2.0], charged).alpha_star == pytest.approx(
        estimate_from_losses([0.0, 1.0, 2.0], losses).alpha_star
    )


@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        ([1.0] * 4, [1.0] * 4),  # a constant level: the unit is that level
        ([0.5] * 4, [1.0] * 4),  # a fast-start doubling between the windows
        ([2.0, 2.0, 1.0, 1.0], [1.0, 0.5, 0.5, 0.5, 0.5, 0.25]),  # levels that move inside windows of two lengths
        ([3.0], [1.0, 2.0]),
    ],
)
def test_line_pace_is_the_lr_whose_steps_walk_the_same_line(earlier, later):
    # Steps along one direction d: the weights after each step are the running sum of the lrs times d. Walked again
    # at one constant lr (the unit), the steps of the two windows must move the later mean exactly as far from the
    # earlier one, and the live weights must lie at `position` on the line. The oracle sums positions; the clocks do
    # not see them.
    rng = np.random.default_rng(0)
    d, x0 = rng.normal(size=3), rng.normal(size=3)
    before = [0.7, 1.3]  # steps before both windows move the two means alike

    def means(lrs):
        x = x0 + np.cumsum(lrs)[:, None] * d
        a = len(before)
        earlier_mean = x[a : a + len(earlier)].mean(0)
        later_mean = x[a + len(earlier) :].mean(0)
        return earlier_mean, later_mean, x[-1]

    pace = Pace()
    for lr in before:
        pace.add(lr)
    pace.close()
    for lr in earlier:
        pace.add(lr)
    first = pace.close()
    for lr in later:
        pace.add(lr)
    unit, position = line_pace(first, pace.close(), pace.now)

    m0, m1, live = means(np.array(before + earlier + later))
    c0, c1, _ = means(np.array(before + [unit] * (len(earlier) + len(later))))
    np.testing.assert_allclose(m1 - m0, c1 - c0, rtol=1e-12)
    np.testing.assert_allclose(live, m0 + position * (m1 - m0), rtol=1e-12)
    if len(set(earlier + later)) == 1:
        assert unit == pytest.approx(earlier[0], rel=1e-15)
        assert position == pytest.approx(1.0 + (len(later) - 1) / (len(earlier) + len(later)), rel=1e-12)


def test_line_pace_after_the_weights_return_to_the_earlier_mean():
    # A window taken back puts the weights at the earlier window's mean, and the clocks at their mean over it: the
    # next window's line runs from there, and its unit is again the lr that walks it.
    d = np.array([1.0, -2.0])
    x = list(np.cumsum([1.0, 1.0, 2.0, 2.0])[:, None] * d)  # the earlier window (2 steps) and a lost one (2)
    pace = Pace()
    for lr in (1.0, 1.0):
        pace.add(lr)
    earlier = pace.close()
    for lr in (2.0, 2.0):
        pace.add(lr)
    pace.close()
    m0 = np.mean(x[:2], 0)
    pace.previous, pace.now = earlier, list(earlier)  # taken back (hf_gen.schemes.Averages._undo)
    after = [0.5, 0.5, 0.25]
    for lr in after:
        pace.add(lr)
    unit, position = line_pace(earlier, pace.close(), pace.now)
    steps = m0 + np.cumsum(after)[:, None] * d
    walked = m0 + np.cumsum([unit] * 3)[:, None] * d
    np.testing.assert_allclose(steps.mean(0) - m0, walked.mean(0) - m0, rtol=1e-12)
    np.testing.assert_allclose(steps[-1], m0 + position * (steps.mean(0) - m0), rtol=1e-12)
