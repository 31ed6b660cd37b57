"""The decision on one line, ``hf_gen.core.measure_line``, on analytic 1-D losses: no Trainer, no model.

Each ``g`` below is a closed-form loss along the line with ``g(0) = 0`` and slope ``-g'(0) = 1`` unless stated; the
probes the core asks for are recorded, so the tests see every point it visited.
"""

import math

import pytest

from hf_gen.core import (
    LineEstimate,
    SearchRules,
    cut_back,
    estimate_from_curvature,
    fit_line,
    measure_line,
    next_probe,
)

RULES = SearchRules(max_change=2.0, max_probes=6)


class Recorded:
    """``g`` with a log of the points it was asked for."""

    def __init__(self, g):
        self.g, self.points = g, []

    def __call__(self, a):
        self.points.append(a)
        return self.g(a)


def parabola(minimiser, curvature=1.0):
    """g(a) = -s a + c a^2 / 2 with the minimiser at s / c."""
    slope = minimiser * curvature
    return (lambda a: -slope * a + 0.5 * curvature * a * a), slope


def search(g, a0, rules=RULES, slope=1.0):
    line = Recorded(g)
    return measure_line(line, [a0], loss=0.0, slope=slope, search=rules), line.points


# ---- one measurement ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("minimiser,a0", [(1.0, 0.3), (2e-4, 1e-3), (50.0, 7.0)])
def test_one_probe_on_a_parabola_gives_its_minimiser_from_either_end_of_the_step(minimiser, a0):
    g, slope = parabola(minimiser, curvature=3.0)
    # Same batch: loss and slope known at 0, one probe at the step's lr.
    same = measure_line(g, [a0], loss=0.0, slope=slope)
    assert same.estimate.alpha_star == pytest.approx(minimiser, rel=1e-9) and same.probes == ((a0, g(a0)),)
    assert same.at is None and same.ceiling is None
    # Next batch: loss and slope known at the step's end a0 (there -g'(a0) = s - c a0), one probe at 0.
    known = slope - 3.0 * a0
    nxt = measure_line(g, [0.0], known_at=a0, loss=g(a0), slope=known)
    assert nxt.estimate.alpha_star == pytest.approx(minimiser, rel=1e-9)
    assert nxt.estimate.slope == pytest.approx(slope, rel=1e-9) and nxt.estimate.loss0 == 0.0


def test_three_points_without_the_slope_fit_the_whole_parabola():
    g, _ = parabola(0.7, curvature=2.0)
    result = measure_line(g, [-0.1, 0.1, 0.2], loss=None, slope=None)
    assert result.estimate.alpha_star == pytest.approx(0.7, rel=1e-9)


def test_a_nonfinite_probe_is_reported_on_either_end():
    def g(a):
        return math.nan

    assert measure_line(g, [0.5], loss=0.0, slope=1.0).estimate.reason == "nonfinite_loss"
    assert measure_line(g, [0.0], known_at=0.5, loss=0.1, slope=1.0).estimate.reason == "nonfinite_loss"
    with pytest.raises(ValueError, match="needs both the loss and the slope"):
        fit_line([0.0], [0.0], known_at=0.5, loss=0.1)


def test_a_concave_line_and_an_ascent_direction_are_not_accepted():
    assert measure_line(lambda a: -a - a * a, [0.5], loss=0.0, slope=1.0).estimate.reason == "nonpositive_curvature"
    assert measure_line(lambda a: a + a * a, [0.5], loss=0.0, slope=-1.0).estimate.reason == "not_descent"


# ---- where the fast start's search probes next --------------------------------------------------------------------


def test_next_probe_moves_toward_the_estimate_until_it_lands_near_it():
    def est(alpha):
        return estimate_from_curvature(alpha, 1.0)

    # Within sqrt(2) of the probe: trusted, no further probe.
    assert next_probe(est(0.1 * 1.4), 0.1, RULES) is None and next_probe(est(0.1 / 1.4), 0.1, RULES) is None
    # Further out: probe at the estimate, but at most 2**3 = 8x away per probe.
    assert next_probe(est(0.5), 0.1, RULES) == pytest.approx(0.5)
    assert next_probe(est(5.0), 0.1, RULES) == pytest.approx(0.8)
    assert next_probe(est(0.06), 0.1, RULES) == pytest.approx(0.06)  # above half the distance: probed at
    # At or below half the distance the probe overshot (its loss >= g(0)): 8x nearer.
    assert next_probe(est(0.05), 0.1, RULES) == pytest.approx(0.1 / 8)
    assert next_probe(est(1e-6), 0.1, RULES) == pytest.approx(0.1 / 8)
    # Unusable estimates with a direction: further on concave descent, nearer on a non-finite loss; else stop.
    assert next_probe(estimate_from_curvature(1.0, -1.0), 0.1, RULES) == pytest.approx(0.8)
    nonfinite = LineEstimate(None, 1.0, math.nan, 0.0, False, "nonfinite_loss")
    assert next_probe(nonfinite, 0.1, RULES) == pytest.approx(0.1 / 8)
    assert next_probe(estimate_from_curvature(-1.0, 1.0), 0.1, RULES) is None  # not a descent direction
    # The absolute bounds hold for probes too.
    capped = SearchRules(max_change=2.0, lr_min=0.02, lr_max=0.3)
    assert next_probe(estimate_from_curvature(1.0, -1.0), 0.1, capped) == pytest.approx(0.3)
    assert next_probe(est(1e-6), 0.1, capped) == pytest.approx(0.02)


# ---- the search on whole lines ------------------------------------------------------------------------------------


@pytest.mark.parametrize("a0", [1e-4, 1e-3, 1e-2, 1e2, 1e3, 1e4])
def test_search_on_a_parabola_from_far_off_ends_on_its_minimiser(a0):
    # From 10^2 to 10^4 times off on either side, within the default budget of 6 probes: 8x per probe on the way up,
    # and on the way down too, while the probes overshoot (a parabola's loss is above g(0) beyond twice its
    # minimiser; such a probe's estimate is not trusted, as it would not be on a saturating loss).
    g, _ = parabola(1.0)
    result, points = search(g, a0)
    assert result.estimate.alpha_star == pytest.approx(1.0, rel=1e-9)
    assert 1 / math.sqrt(2.0) <= result.at <= math.sqrt(2.0)
    assert (result.ceiling is None) == (a0 < 1.0) and (result.ceiling is None or 2.0 <= result.ceiling <= a0)
    assert len(points) == len(set(points)) <= 1 + RULES.max_probes  # no distance probed twice
    assert [a for a, _ in result.probes] == points  # every probe is in the record


def test_search_on_a_parabola_within_the_tolerance_makes_no_probe():
    g, _ = parabola(1.0)
    result, points = search(g, 1.2)
    assert points == [1.2] and result.at is None and result.estimate.alpha_star == pytest.approx(1.0)


def test_search_on_a_quartic_closes_in_without_probing_a_distance_twice():
    # g(a) = -a + a^4 / 4: minimiser 1. From 1e-3 the parabolas through the flat start put the minimiser far out;
    # past it (4.096, loss above g(0)) the search comes back and brackets: 1.448 (estimate 0.954, nearer), 0.954
    # (estimate 2.2, further), then the bracket's middle 1.175, whose parabola agrees with it (estimate 1.448).
    def g(a):
        return -a + a**4 / 4.0

    result, points = search(g, 1e-3, SearchRules(max_change=2.0, max_probes=8))
    assert len(points) == len(set(points)) == 8  # stopped by agreement, one probe short of the budget
    assert result.at / math.sqrt(2.0) <= result.estimate.alpha_star <= result.at * math.sqrt(2.0)
    assert result.ceiling == pytest.approx(4.096) and g(result.estimate.alpha_star) < g(0.0)
    # The default budget of 6 ends one probe earlier, on an estimate (2.2) not yet confirmed: the scheduler bounds
    # it around its probe (0.954) and below the ceiling, and the fast start measures again on the next step.
    short, points = search(g, 1e-3)
    assert len(points) == len(set(points)) == 7 and short.ceiling == pytest.approx(4.096)


@pytest.mark.parametrize("probes", range(1, 8))
def test_search_brackets_a_cliff_and_never_trusts_a_point_past_it(probes):
    # g(a) = -a + a^2/20 (minimiser 10) up to a cliff at 1.5 where the loss is not finite. The search must not
    # bounce between a distance that points further and one past the cliff.
    def g(a):
        return -a + a * a / 20.0 if a < 1.5 else math.inf

    result, points = search(g, 0.5, SearchRules(max_change=2.0, max_probes=probes))
    assert len(set(points)) == len(points) and len(points) <= 1 + probes
    assert result.estimate.accepted
    if result.ceiling is not None:
        assert result.ceiling >= 1.5 and result.at < result.ceiling
    if probes >= 5:  # the default budget closes the bracket below the cliff
        assert result.ceiling is not None and result.at < 1.5


def test_search_into_a_nan_region_keeps_the_last_estimate_it_trusted():
    # Minimiser 10, but the loss is NaN from 0.8 on (a numerical blow-up on the way): the probe at 0.8 fails, the
    # search falls back to the last usable estimate, short of it, and names 0.8 as the ceiling.
    def g(a):
        return -a + a * a / 20.0 if a < 0.8 else math.nan

    result, points = search(g, 0.1)
    assert 0.8 in points and result.ceiling == 0.8
    assert result.estimate.accepted and result.at < 0.8


def test_search_on_a_saturating_loss_comes_back_from_the_plateau():
    # g(a) = log(1 + (a - 1)^2) - log 2: minimiser 1, slope 1 at 0, and nearly flat far out. A probe at 1e3 sits on
    # the plateau, where its parabola puts the minimiser near half the distance whatever it is: the search walks back
    # by 8x per probe instead, and ends near the true minimiser.
    def g(a):
        return math.log1p((a - 1.0) ** 2) - math.log(2.0)

    result, points = search(g, 1e3, SearchRules(max_change=2.0, max_probes=8))
    assert result.ceiling is not None and result.ceiling <= 1e3 / 8
    assert 0.25 <= result.estimate.alpha_star <= 4.0 and g(result.estimate.alpha_star) < 0.0


def test_the_search_needs_one_probe_and_the_slope():
    g, _ = parabola(1.0)
    with pytest.raises(ValueError, match="one probe"):
        measure_line(g, [0.5, 1.0], loss=0.0, slope=1.0, search=RULES)


# ---- the first step's cut-back ------------------------------------------------------------------------------------


def test_cut_back_divides_the_step_until_the_loss_falls():
    # Loss 0 at the start; the line blows up beyond 0.01 and is a parabola with minimiser 0.004 below it.
    def g(a):
        return -a + a * a / 0.008 if a < 0.01 else math.inf

    line = Recorded(g)
    result = cut_back(line, 0.0, 1.0, factor=8.0, max_probes=6)
    assert line.points == [1.0, 1 / 8, 1 / 64, 1 / 512]  # 1/512 ~ 0.002 is the first below the start's loss
    assert result.at == 1 / 512 and result.estimate.reason == "overshot"
    # A step that lowers the loss at once is kept, after one probe.
    kept = cut_back(line, 0.0, 0.003, factor=8.0, max_probes=6)
    assert kept.at == 0.003 and len(kept.probes) == 1
    # With the budget spent the last cut is taken without a probe.
    short = cut_back(Recorded(g), 0.0, 1.0, factor=8.0, max_probes=2)
    assert short.at == 1 / 64 and [a for a, _ in short.probes] == [1.0, 1 / 8]


# ---- the loss's precision ------------------------------------------------------------------------------------------


def test_a_probe_whose_change_is_within_the_loss_precision_is_refused_and_a_longer_one_is_not():
    # g(a) = L - s a + c a^2 / 2 with L = 2: at unit roundoff u = 2**-8 (bfloat16) changes below u * L = 2**-7 are
    # rounding. A step of 1e-4 moves it by about 1e-4 (linear) and the probe adds rounding-sized noise to it.
    u, loss, s, c = 2.0**-8, 2.0, 1.0, 4.0
    a0 = 1e-4
    noisy = loss - s * a0 + 0.5 * c * a0 * a0 + 0.6 * u * loss  # the rounding pushed the probe up
    refused = fit_line([a0], [noisy], loss=loss, slope=s, precision=u)
    assert not refused.accepted and refused.reason == "below_precision" and refused.loss0 == loss
    # Without the check the same numbers read as a huge curvature and a minimiser 5000 times too close.
    blind = fit_line([a0], [noisy], loss=loss, slope=s)
    assert blind.accepted and blind.alpha_star < (s / c) / 1000
    # Out of sample the known point is the step's end: the same rule holds from there.
    nxt = fit_line([0.0], [loss + 0.3 * u * loss], known_at=a0, loss=loss, slope=s, precision=u)
    assert nxt.reason == "below_precision"
    # A step long enough to move the loss well past its precision is fitted as before (here exactly).
    a1 = 0.1
    exact = fit_line([a1], [loss - s * a1 + 0.5 * c * a1 * a1], loss=loss, slope=s, precision=u)
    assert exact.accepted and exact.alpha_star == pytest.approx(s / c, rel=1e-9)
    # An overshoot moves the loss by far more than its precision even where the slope predicts little: kept.
    far = fit_line([a0], [loss + 10 * u * loss], loss=loss, slope=s, precision=u)
    assert far.accepted and far.alpha_star < a0


def test_the_fast_start_search_goes_further_out_from_a_probe_too_short_to_measure():
    u, c = 2.0**-8, 1.0
    minimiser = 1.0
    line = Recorded(lambda a: 2.0 - minimiser * c * a + 0.5 * c * a * a)
    result = measure_line(line, [1e-5], loss=2.0, slope=minimiser * c, search=RULES, precision=u)
    # 1e-5 moves the loss by 1e-5 < u * 2: too short; the search jumps max_change**3 = 8x per probe until the loss
    # moves, then converges on the minimiser.
    assert line.points[:3] == [1e-5, 8e-5, 6.4e-4] and result.estimate.accepted
    assert result.estimate.alpha_star == pytest.approx(minimiser, rel=1e-9)


def test_the_first_step_cut_takes_a_rise_within_the_loss_precision_for_rounding():
    u, loss = 2.0**-8, 2.0
    within = Recorded(lambda a: loss + 0.5 * u * loss)  # the step "rose" by half a rounding unit
    assert cut_back(within, loss, 1e-4, factor=8.0, max_probes=3, precision=u).at == 1e-4
    assert cut_back(within, loss, 1e-4, factor=8.0, max_probes=3).at < 1e-4  # without the precision: cut
    beyond = Recorded(lambda a: loss + 4 * u * loss if a > 2e-5 else loss - a)  # a real overshoot is still cut
    assert cut_back(beyond, loss, 1e-4, factor=8.0, max_probes=3, precision=u).at == 1e-4 / 8
