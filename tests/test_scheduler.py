"""The lr state machine: each rule against its closed form, and exact resume through torch.save/load."""

import io
import math

import pytest
import torch

from hf_gen.core import LineEstimate, estimate_from_curvature
from hf_gen.scheduler import GEN_SETTINGS, GeNEstimateError, GeNScheduler, line_gamma


def make(lr=0.1, ratio=0.25, **kwargs):
    """A scheduler on two param groups; the rules under test are the level's, so no shape, no ceiling and plain
    smoothing (gamma's weight from the first settled estimate, not the count's) unless asked for."""
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([{"params": [a], "lr": lr}, {"params": [b], "lr": lr * ratio}], lr=lr)
    return opt, GeNScheduler(opt, **{"decay": "none", "lr_max": math.inf, "smooth_by_count": False, **kwargs})


def test_defaults_used_alone_are_the_arguments_defaults():
    import dataclasses
    import inspect

    from hf_gen import GeNTrainingArguments

    fields = {f.name: f.default for f in dataclasses.fields(GeNTrainingArguments) if f.name.startswith("gen_")}
    params = inspect.signature(GeNScheduler.__init__).parameters
    # The run's length and warmup are the Trainer's own arguments (num_training_steps, get_warmup_steps), not gen_*.
    assert set(params) - {"self", "optimizer", "num_training_steps", "warmup_steps", "last_epoch"} == set(GEN_SETTINGS)
    assert params["warmup_steps"].default == GeNTrainingArguments(output_dir="unused").warmup_steps == 0
    for name in set(GEN_SETTINGS) - {"decay", "smooth_by_count"}:
        assert params[name].default == fields[f"gen_{name}"], name
    # The arguments' decay shape and count follow the probe scheme (None resolves to no shape and the count on the
    # window lines); the scheduler alone is driven by whatever estimates its caller measures, and takes the one-step
    # estimates' settings.
    assert fields["gen_decay"] is None and fields["gen_smooth_by_count"] is None
    one_step = GeNTrainingArguments(output_dir="unused", lr_scheduler_type="gen", gen_probe_batch="same")
    assert params["decay"].default == one_step.gen_decay == "cosine"
    assert params["smooth_by_count"].default is one_step.gen_smooth_by_count is False
    windows = GeNTrainingArguments(output_dir="unused", lr_scheduler_type="gen")
    assert windows.gen_probe_batch == "averages" and windows.gen_smooth_by_count is True
    chosen = GeNTrainingArguments(output_dir="unused", lr_scheduler_type="gen", gen_probe_batch="next",
                                  gen_smooth_by_count=True)  # fmt: skip
    assert chosen.gen_smooth_by_count is True  # an explicit choice stands with any lines
    with pytest.raises(ValueError, match="pass num_training_steps, or decay='none'"):
        GeNScheduler(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1))


def est(alpha):
    return estimate_from_curvature(alpha, 1.0)


def bad(reason="nonpositive_curvature"):
    return LineEstimate(None, 1.0, -1.0, 0.0, False, reason)


def test_smoothed_clipped_update_and_group_ratios():
    opt, s = make(lr=0.1, gamma=0.9, max_change=2.0, fast_start=False)
    assert s.is_due(0)
    new = s.apply_estimate(est(0.15), step=0)  # inside [0.05, 0.2]: geometric, 0.1**0.9 * 0.15**0.1
    assert new == pytest.approx(0.1**0.9 * 0.15**0.1)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([new, new * 0.25])
    assert s.get_last_lr() == pytest.approx([new, new * 0.25])
    again = s.apply_estimate(est(10.0), step=4)  # clipped to 2 * lr
    assert again == pytest.approx(new * 2**0.1)
    assert s.last_fallback is None and s.num_fallbacks == 0


def test_an_update_may_carry_its_own_smoothing():
    opt, s = make(lr=0.1, gamma=0.9, max_change=2.0, fast_start=False)
    new = s.apply_estimate(est(0.15), step=0, gamma=0.9**4)  # an estimate spanning 4 intervals: gamma per interval
    assert new == pytest.approx(0.1 ** (0.9**4) * 0.15 ** (1 - 0.9**4))
    assert s.gamma == 0.9 and s.apply_estimate(est(0.15), step=4) == pytest.approx(new**0.9 * 0.15**0.1)


def test_a_cap_from_a_second_line_holds_the_fast_start_and_settles_it():
    opt, s = make(lr=0.1, max_change=2.0)  # the fast start: no smoothing, unsettled
    assert s.preview(est(0.4)) == pytest.approx(0.2) and s.level == 0.1 and not s.settled  # preview changes nothing
    assert s.apply_estimate(est(0.4), step=0, cap=0.15) == pytest.approx(0.15) and s.settled  # held at the cap
    opt, s = make(lr=0.1, max_change=2.0)
    assert s.apply_estimate(est(0.4), step=0, cap=0.3) == pytest.approx(0.2) and not s.settled  # a cap not reached
    assert s.apply_estimate(est(0.02), step=1, cap=0.2) == pytest.approx(0.1)  # a fall is not capped: 0.2 / 2
    opt, s = make(lr=0.1, max_change=2.0)  # a cap from a line with no estimate of its own holds, and settles nothing
    assert s.apply_estimate(est(0.4), step=0, cap=0.1, cap_settles=False) == pytest.approx(0.1) and not s.settled
    assert (
        s.apply_estimate(est(0.12), step=1, cap=0.1, cap_settles=False) == pytest.approx(0.1) and s.settled
    )  # inside


def test_a_halving_and_a_doubling_cancel():
    """The level moves on a log scale: estimates as often at lr / 2 as at 2 lr leave it where it was."""
    opt, s = make(lr=0.1, gamma=0.9, max_change=2.0, fast_start=False)
    for t in range(10):
        s.apply_estimate(est(s.level * (0.5 if t % 2 else 2.0)), step=t)
    assert s.level == pytest.approx(0.1, rel=1e-12)  # an arithmetic mean would end at 0.1 * 1.045**5


def test_interval_counts_optimizer_steps():
    opt, s = make(interval=3, fast_start=False)
    s.apply_estimate(est(0.1), step=0)
    assert [s.is_due(t) for t in range(1, 7)] == [False, False, True, True, True, True]


def test_adaptive_interval_doubles_while_steady_and_drops_back_on_anything_else():
    """The gap after each update: doubled when the estimate lands inside the change bound [level / 4, 4 level],
    capped at max_interval; a clipped estimate, a fallback or a restart resets it to interval."""
    opt, s = make(lr=0.1, gamma=0.5, max_change=4.0, interval=2, max_interval=16, fast_start=False)
    step, gaps = 0, []
    for factor in (3.9, 1.0, 0.3, 1.0, 1.0, 4.5, 1.0):  # 4.5 lies beyond the bound: clipped
        s.apply_estimate(est(s.level * factor), step=step)
        gaps.append(s.interval_in_force)
        assert not s.is_due(step + s.interval_in_force - 1) and s.is_due(step + s.interval_in_force)
        step += s.interval_in_force
    assert gaps == [4, 8, 16, 16, 16, 2, 4]
    s.apply_estimate(bad("nonfinite_curvature"), step=step)
    assert s.interval_in_force == 2
    s.apply_estimate(est(s.level), step=step + 2)
    assert s.interval_in_force == 4
    s.restart(0.05, step=step + 6, reason="overshot")
    assert s.interval_in_force == 2
    # without max_interval the interval is fixed, steady or not
    opt, s = make(lr=0.1, interval=3, fast_start=False)
    for t in range(0, 12, 3):
        s.apply_estimate(est(s.level), step=t)
        assert s.interval_in_force == 3


def test_adaptive_interval_waits_for_the_fast_start_and_survives_a_checkpoint():
    opt, s = make(lr=1e-6, gamma=0.9, max_change=2.0, interval=4, max_interval=32)
    s.apply_estimate(est(1e-3), step=0)  # far: fast start goes on, every step
    assert s.interval_in_force == 1
    s.apply_estimate(est(3e-6), step=1)  # inside [1e-6, 4e-6]: settles; a fast-start update does not lengthen
    assert s.settled and s.interval_in_force == 4
    s.apply_estimate(est(s.level), step=5)
    assert s.interval_in_force == 8
    buffer = io.BytesIO()
    torch.save(s.state_dict(), buffer)
    opt2, s2 = make(lr=1e-6, gamma=0.9, max_change=2.0, interval=4, max_interval=32)
    buffer.seek(0)
    s2.load_state_dict(torch.load(buffer, weights_only=False))
    assert s2.interval_in_force == 8 and not s2.is_due(12) and s2.is_due(13)


def test_fast_start_skips_smoothing_until_an_estimate_lands_inside_the_bound():
    opt, s = make(lr=1e-6, gamma=0.9, max_change=2.0, interval=4, fast_start=True)
    lr = 1e-6
    for t in range(5):
        assert s.is_due(t)  # every step while unsettled
        lr = s.apply_estimate(est(1e-3), step=t)
    assert lr == pytest.approx(32e-6)  # doubled five times, no smoothing
    opt, s = make(lr=1e-3, gamma=0.9, max_change=2.0, interval=4)
    s.apply_estimate(est(1.5e-3), step=0)  # inside: settles, smoothing on from here
    assert s.settled and not s.is_due(1) and s.is_due(4)


def test_absolute_bounds_replace_the_estimate_and_are_recorded():
    opt, s = make(lr=0.1, gamma=0.0, max_change=math.inf, lr_max=0.3, lr_min=0.01, fast_start=False)
    assert s.apply_estimate(est(5.0), step=0) == pytest.approx(0.3)
    assert s.last_fallback == "above_max" and s.num_fallbacks == 1
    assert s.apply_estimate(est(1e-4), step=1) == pytest.approx(0.01)
    assert s.last_fallback == "below_min" and s.num_fallbacks == 2


def test_unusable_estimates_that_say_which_way_move_the_lr_toward_a_bound():
    opt, s = make(lr=0.1, gamma=0.9, fallback="keep", fast_start=False)
    # No descent along the update: a quadratic without descent is minimised at 0, so the target is lr / 2.
    assert s.apply_estimate(LineEstimate(None, -1.0, 2.0, 0.0, False, "not_descent"), step=0) == pytest.approx(
        0.1 * 2**-0.1
    )
    assert s.last_fallback == "not_descent" and s.num_fallbacks == 1
    # Non-positive curvature along a descent direction: the minimiser lies further out, the target is 2 lr.
    assert s.apply_estimate(bad("nonpositive_curvature"), step=1) == pytest.approx(0.1)
    assert s.last_fallback == "nonpositive_curvature" and s.num_fallbacks == 2
    # A probe loss that is not finite: the lr overshot, the lower bound is taken at once.
    assert s.apply_estimate(bad("nonfinite_loss"), step=2) == pytest.approx(0.05)


@pytest.mark.parametrize("policy,expected", [("keep", 0.1), ("shrink", 0.1 * 2**-0.1)])
def test_fallback_policies_decide_only_what_says_nothing_about_the_lr(policy, expected):
    opt, s = make(lr=0.1, gamma=0.9, fallback=policy, fast_start=False)
    nan = LineEstimate(None, 1.0, float("nan"), 0.0, False, "nonfinite_curvature")
    assert s.apply_estimate(nan, step=0) == pytest.approx(expected)
    assert s.last_fallback == "nonfinite_curvature"


def test_error_policy_raises_with_advice():
    opt, s = make(fallback="error")
    with pytest.raises(GeNEstimateError, match="gen_fallback"):
        s.apply_estimate(bad(), step=0)


@pytest.mark.parametrize(
    "decay,shape",
    [
        ("linear", lambda t, T: 1 - t / T),
        ("cosine", lambda t, T: 0.5 * (1 + math.cos(math.pi * t / T))),
        # 1 up to 80% of the run, then 1 - sqrt of the share of the last 20% gone: T = 10 -> 1 x 9, 1 - sqrt(0.5)
        ("cooldown", lambda t, T: 1.0 if t <= 8 else 1 - math.sqrt(0.5)),
    ],
)
def test_decay_shape_composes_with_the_level(decay, shape):
    T = 10
    opt, s = make(lr=0.2, decay=decay, num_training_steps=T, fast_start=False, gamma=0.0)
    lrs = []
    for _ in range(T):
        lrs.append(s.get_last_lr()[0])
        opt.step()
        s.step()
    assert lrs == pytest.approx([0.2 * shape(t, T) for t in range(T)])
    # GeN sets the level, the shape anneals it: the applied lr is estimate x shape from the update on.
    opt, s = make(lr=0.2, decay=decay, num_training_steps=T, fast_start=False, gamma=0.0, max_change=math.inf,
                  lr_max=100.0)  # fmt: skip
    for _ in range(5):
        opt.step()
        s.step()
    assert s.apply_estimate(est(0.05), step=5) == pytest.approx(0.05 * shape(5, T))
    opt.step()
    s.step()
    assert s.get_last_lr()[0] == pytest.approx(0.05 * shape(6, T))


@pytest.mark.parametrize(
    "decay,after",
    [
        ("none", lambda u: 1.0),
        ("linear", lambda u: 1 - u),
        ("cosine", lambda u: 0.5 * (1 + math.cos(math.pi * u))),
        ("cooldown", lambda u: 1.0 if u <= 0.8 else 1 - math.sqrt((u - 0.8) / 0.2)),
    ],
)
def test_a_warmup_rises_linearly_and_the_decay_runs_over_the_steps_after_it(decay, after):
    T, W = 13, 3  # the decay spans steps 3..13: u = (t - 3) / 10

    def shape(t):
        return min((t + 1) / (W + 1), 1.0) * after(max(t - W, 0) / (T - W))

    opt, s = make(lr=0.2, decay=decay, num_training_steps=T, warmup_steps=W, fast_start=False, gamma=0.0)
    lrs = []
    for _ in range(T):
        lrs.append(s.get_last_lr()[0])
        opt.step()
        s.step()
    assert lrs[: W + 1] == pytest.approx([0.05, 0.1, 0.15, 0.2])  # the rise: (t + 1) / (W + 1), never 0
    assert lrs == pytest.approx([0.2 * shape(t) for t in range(T)])
    # GeN's first estimate comes at step W, where the rise is complete: the level and the decay's start apply.
    opt, s = make(lr=0.2, decay=decay, num_training_steps=T, warmup_steps=W, fast_start=False, gamma=0.0,
                  max_change=math.inf, lr_max=100.0)  # fmt: skip
    for _ in range(W):
        opt.step()
        s.step()
    assert s.apply_estimate(est(0.4), step=W) == pytest.approx(0.4 * after(0.0))
    assert s.level == pytest.approx(0.4)


@pytest.mark.parametrize("decay", ["linear", "cosine"])
def test_after_the_warmup_the_shape_is_the_trainers_own_schedule(decay):
    # The oracle: transformers' schedules with a warmup, which decay over the steps after it. The rise differs by
    # design (theirs starts at 0, ours one step in); from step W on, the two must agree.
    from transformers import get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

    T, W = 40, 7
    build = get_linear_schedule_with_warmup if decay == "linear" else get_cosine_schedule_with_warmup
    theirs_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    theirs = build(theirs_opt, num_warmup_steps=W, num_training_steps=T)
    opt, s = make(lr=1.0, decay=decay, num_training_steps=T, warmup_steps=W, fast_start=False)
    for t in range(T):
        if t >= W:
            assert s.get_last_lr()[0] == pytest.approx(theirs.get_last_lr()[0], abs=1e-12), t
        else:
            assert s.get_last_lr()[0] == pytest.approx((t + 1) / (W + 1))
        for o, sched in ((opt, s), (theirs_opt, theirs)):
            o.step()
            sched.step()


def test_nothing_is_due_during_the_warmup_and_gen_starts_after_it():
    opt, s = make(lr=0.1, interval=2, warmup_steps=3, fast_start=False)
    assert s.first_step == 3
    assert [s.is_due(t) for t in range(4)] == [False, False, False, True]
    s.apply_estimate(est(0.1), step=3)
    assert [s.is_due(t) for t in (4, 5)] == [False, True]
    assert make(lr=0.1)[1].first_step == 0


def test_a_warmup_longer_than_the_run_only_rises():
    opt, s = make(lr=0.3, decay="cosine", num_training_steps=4, warmup_steps=9, fast_start=False)
    assert [s.shape(t) for t in range(4)] == pytest.approx([0.1, 0.2, 0.3, 0.4])


def test_a_checkpoint_saved_before_the_warmup_option_resumes_without_one():
    opt, s = make(lr=0.1, decay="linear", num_training_steps=10, warmup_steps=4)
    state = s.state_dict()
    del state["warmup_steps"]  # as saved by a release without it
    opt2, s2 = make(lr=0.1, decay="linear", num_training_steps=10, warmup_steps=4)
    s2.load_state_dict(state)
    assert s2.warmup_steps == 0
    assert s2.shape(0) == 1.0


def test_state_round_trips_through_a_weights_only_checkpoint():
    opt, s = make(lr=0.1, interval=2)
    s.apply_estimate(est(0.13), step=0)
    opt.step()
    s.step()
    buffer = io.BytesIO()
    torch.save(s.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    opt2, s2 = make(lr=0.1, interval=2)
    s2.load_state_dict(state)
    for t in (1, 2, 3):
        assert s2.is_due(t) == s.is_due(t)
    assert s2.apply_estimate(est(0.2), step=2) == s.apply_estimate(est(0.2), step=2)
    assert s2.num_updates == s.num_updates == 2


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"interval": 0}, "gen_interval"),
        ({"interval": 4, "max_interval": 2}, "gen_max_interval must be None"),
        ({"gamma": 1.0}, "gen_gamma"),
        ({"max_change": 0.5}, "gen_max_change"),
        ({"lr_min": 0.2, "lr_max": 0.1}, "gen_lr_min"),
        ({"lr_min": -1.0}, "gen_lr_min"),
        ({"fallback": "ignore"}, "gen_fallback"),
        ({"decay": "step"}, "gen_decay"),
        ({"decay": "linear"}, "num_training_steps"),
        ({"max_change": math.inf}, "finite gen_max_change"),  # with the helper's lr_max=inf: unbounded
        ({"warmup_steps": -1}, "warmup_steps must be a whole number of optimizer steps >= 0"),
        ({"warmup_steps": 0.1}, "warmup_steps must be a whole number"),
    ],
)
def test_bad_settings_say_what_to_pass(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make(**kwargs)


def test_zero_starting_lr_is_refused():
    with pytest.raises(ValueError, match="learning_rate > 0"):
        make(lr=0.0)


def test_fast_decrease_clips_only_increases():
    opt, s = make(lr=0.1, gamma=0.0, max_change=2.0, fast_start=False, fast_decrease=True)
    assert s.apply_estimate(est(0.001), step=0) == pytest.approx(0.001)  # far below lr/2: taken as it is
    assert s.apply_estimate(est(1.0), step=1) == pytest.approx(0.002)  # increases are still bounded
    opt, s = make(lr=0.1, gamma=0.0, max_change=2.0, fast_start=False)
    assert s.apply_estimate(est(0.001), step=0) == pytest.approx(0.05)


def test_lower_at_once_smooths_only_raises():
    # gamma 0.5, bound 2: a raise moves the level halfway on a log scale, a lowering is taken whole (within the bound).
    opt, s = make(lr=0.1, gamma=0.5, max_change=2.0, fast_start=False, lower_at_once=True)
    assert s.apply_estimate(est(0.08), step=0) == pytest.approx(0.08)  # lower, inside the bound: taken as it is
    assert s.apply_estimate(est(0.01), step=1) == pytest.approx(0.04)  # lower, beyond the bound: to level / 2
    assert s.apply_estimate(est(0.16), step=2) == pytest.approx(math.sqrt(0.04 * 0.08))  # raise: bounded, smoothed
    assert opt.param_groups[1]["lr"] == pytest.approx(0.25 * math.sqrt(0.04 * 0.08))
    level = s.level
    # A line that did not descend points down, to the bound, and is taken whole too.
    not_descent = LineEstimate(None, 0.5, 1.0, 1.0, False, "not_descent")
    assert s.apply_estimate(not_descent, step=3) == pytest.approx(level / 2)
    # Without the option the same lowering is smoothed: sqrt(0.1 * 0.08).
    opt, s = make(lr=0.1, gamma=0.5, max_change=2.0, fast_start=False)
    assert s.apply_estimate(est(0.08), step=0) == pytest.approx(math.sqrt(0.1 * 0.08))


def test_the_search_rules_follow_the_fast_start():
    _, sched = make(lr=0.1, max_change=2.0, lr_max=0.3, lr_min=0.02)
    rules = sched.search_rules(5)
    assert (rules.max_change, rules.lr_min, rules.lr_max, rules.max_probes) == (2.0, 0.02, 0.3, 5)
    assert sched.search_rules(0) is None  # no probes allowed: no search
    sched.apply_estimate(est(0.12), 0)  # lands inside the bound: settled, no search from here on
    assert sched.settled and sched.search_rules(5) is None
    _, off = make(lr=0.1, fast_start=False)
    assert off.search_rules(5) is None


def test_an_estimate_from_a_searched_probe_is_bounded_around_that_probe():
    opt, sched = make(lr=0.1, ratio=0.25, max_change=2.0)
    # Measured at a = 1e-3 (the search moved the probe): a* = 1.2e-3 lies inside [5e-4, 2e-3] and is taken whole.
    assert sched.apply_estimate(est(1.2e-3), 0, at=1e-3) == pytest.approx(1.2e-3)
    assert sched.settled and sched.level == pytest.approx(1.2e-3)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1.2e-3, 0.3e-3])
    # Without the distance the same estimate would have been clipped to level / 2 = 0.05.
    _, plain = make(lr=0.1)
    assert plain.apply_estimate(est(1.2e-3), 0) == pytest.approx(0.05)


def test_a_search_that_ended_short_of_a_cliff_caps_the_level_below_it():
    # The cliff case of the search (tests/test_line_search.py) hands over a ceiling: the level stays below it, by the
    # trust tolerance, whatever the estimate says.
    _, sched = make(lr=0.5, max_change=2.0)
    applied = sched.apply_estimate(est(4.0), 0, at=1.0, ceiling=1.5)
    assert applied == pytest.approx(1.5 / math.sqrt(2.0))


def test_a_converged_search_under_decay_is_bounded_in_line_units():
    # A converged search at a decaying step applies a* x shape: the bound is around the distance in the units of a*.
    opt, sched = make(lr=1.0, ratio=1.0, decay="linear", num_training_steps=10)
    estimate = estimate_from_curvature(1.0, 1.0)  # a* = 1, measured at a = 1
    applied = sched.apply_estimate(estimate, 7, at=1.0)
    assert applied == pytest.approx(1.0 * 0.3) and sched.settled and sched.level == pytest.approx(1.0)


def test_a_step_too_short_for_the_loss_precision_keeps_a_settled_level_and_raises_an_unsettled_one():
    short = LineEstimate(None, 1.0, float("nan"), 1.0, False, "below_precision")
    opt, s = make(lr=0.1, gamma=0.9, max_change=2.0, fast_start=False)  # settled from the start
    for t in range(3):
        assert s.apply_estimate(short, step=t) == 0.1  # no information: the level stays, whatever the shape does
    assert s.last_fallback == "below_precision" and s.num_fallbacks == 3
    opt, s = make(lr=1e-8, gamma=0.9, max_change=2.0, fast_start=True)  # the fast start: too small to measure
    assert s.apply_estimate(short, step=0) == pytest.approx(2e-8) and not s.settled


def test_a_window_taken_back_halves_the_level_at_once_and_caps_it_from_then_on():
    """``"lost_window"``: the level goes to level / max_change unsmoothed, whatever gamma and the fallback policy
    (it is a decision, not an unusable estimate, so ``fallback="error"`` does not raise); later estimates may lower
    the level but not raise it above that, and the cap goes with the scheduler's state."""
    opt, s = make(lr=0.1, gamma=0.9, max_change=2.0, fast_start=False, fallback="error")
    assert s.apply_estimate(bad("lost_window"), step=0) == pytest.approx(0.05, rel=1e-12)
    assert s.apply_estimate(est(1.0), step=1) == pytest.approx(0.05, rel=1e-12)  # would be 0.05**0.9 * 0.1**0.1
    assert opt.param_groups[1]["lr"] == pytest.approx(0.05 * 0.25, rel=1e-12)
    low = 0.05**0.9 * 0.025**0.1
    assert s.apply_estimate(est(0.001), step=2) == pytest.approx(low, rel=1e-12)  # down as usual
    assert s.apply_estimate(bad("lost_window"), step=3) == pytest.approx(low / 2, rel=1e-12)
    _, resumed = make(lr=0.1, gamma=0.9, max_change=2.0, fast_start=False)
    resumed.load_state_dict(s.state_dict())
    assert resumed.undo_ceiling == pytest.approx(low / 2, rel=1e-12)
    assert resumed.apply_estimate(est(1.0), step=4) == pytest.approx(low / 2, rel=1e-12)


def test_smooth_by_count_weighs_the_kth_settled_target_by_one_over_k_plus_one():
    # gamma 0.9, no bound: plain smoothing moves 10% of the way (log scale); by count, the k-th settled target weighs
    # max(1/(k+1), 0.1): the level is the geometric mean of the start and every target so far, up to k = 9.
    opt, s = make(lr=1.0, gamma=0.9, max_change=math.inf, lr_max=100.0, fast_start=False, smooth_by_count=True)
    targets = [2.0, 0.5, 4.0, 3.0, 1.5, 0.25, 8.0, 2.0, 1.0, 0.5, 5.0, 0.2]
    logs = [0.0]
    for k, t in enumerate(targets, start=1):
        level = s.apply_estimate(est(t), step=k - 1)
        if k <= 9:  # 1/(k+1) >= 0.1: the plain mean of the logs
            logs.append(math.log(t))
            expected = math.exp(sum(logs) / len(logs))
        else:  # from the 10th on, gamma's own weight: 0.9 * log(level) + 0.1 * log(t)
            expected = math.exp(0.9 * math.log(expected) + 0.1 * math.log(t))
        assert level == pytest.approx(expected, rel=1e-12), k
    assert s.smoothed == len(targets)
    # The count travels with the scheduler's state: a resumed run weighs its next target as the uninterrupted one.
    _, fresh = make(lr=1.0, gamma=0.9, max_change=math.inf, lr_max=100.0, fast_start=False, smooth_by_count=True)
    fresh.load_state_dict(s.state_dict())
    assert fresh.smoothed == s.smoothed and fresh.level == s.level
    # Without the option the first target already moves the level by gamma's weight only.
    _, plain = make(lr=1.0, gamma=0.9, max_change=math.inf, lr_max=100.0, fast_start=False, smooth_by_count=False)
    assert plain.apply_estimate(est(2.0), step=0) == pytest.approx(2.0**0.1)


def test_a_checkpoint_from_before_smooth_by_count_resumes_with_plain_smoothing():
    # A release before the option saved neither the flag nor the count; its run smoothed plainly, and goes on so
    # under today's default (on): the next settled target weighs gamma's 0.1, not the count's 1/2.
    _, old = make(lr=1.0, gamma=0.9, max_change=math.inf, lr_max=100.0, fast_start=False, smooth_by_count=False)
    old.apply_estimate(est(2.0), step=0)
    saved = old.state_dict()
    del saved["smooth_by_count"], saved["smoothed"]
    buffer = io.BytesIO()
    torch.save(saved, buffer)
    buffer.seek(0)
    _, resumed = make(lr=1.0, gamma=0.9, max_change=math.inf, lr_max=100.0, fast_start=False, smooth_by_count=True)
    resumed.load_state_dict(torch.load(buffer, weights_only=False))
    assert not resumed.smooth_by_count and resumed.smoothed == 0
    level = resumed.level
    assert resumed.apply_estimate(est(4.0), step=4) == pytest.approx(level**0.9 * 4.0**0.1, rel=1e-12)
    # A checkpoint that has them keeps them.
    _, counted = make(lr=1.0, gamma=0.9, max_change=math.inf, lr_max=100.0, fast_start=False, smooth_by_count=True)
    counted.apply_estimate(est(2.0), step=0)
    again = make(lr=1.0, gamma=0.9, max_change=math.inf, lr_max=100.0, fast_start=False, smooth_by_count=False)[1]
    again.load_state_dict(counted.state_dict())
    assert again.smooth_by_count and again.smoothed == 1


def test_smooth_by_count_starts_counting_when_the_fast_start_settles():
    # The fast start takes its estimates whole and counts none; the level it settles at is the first sample.
    opt, s = make(lr=0.01, gamma=0.9, max_change=2.0, smooth_by_count=True)
    assert s.apply_estimate(est(1.0), step=0) == pytest.approx(0.02)  # outside the bound: doubled, not settled
    assert not s.settled and s.smoothed == 0
    assert s.apply_estimate(est(0.03), step=1) == pytest.approx(0.03)  # inside: taken whole, settles
    assert s.settled and s.smoothed == 0
    assert s.apply_estimate(est(0.06), step=2) == pytest.approx(math.sqrt(0.03 * 0.06))  # the first: weight 1/2
    assert s.apply_estimate(est(0.025), step=3) == pytest.approx((0.03 * 0.06 * 0.025) ** (1 / 3))  # the second: 1/3


def test_smooth_by_count_must_be_a_bool():
    with pytest.raises(ValueError, match="gen_smooth_by_count must be True or False"):
        make(lr=0.1, smooth_by_count="yes")


@pytest.mark.parametrize("gamma, interval", [(0.9, 4), (0.5, 1), (0.99, 8)])
def test_line_gamma_is_the_steady_state_kalman_gain_of_a_noisy_line(gamma, interval):
    # Without noise: the same memory in steps, gamma ** (span / interval).
    for span in (1, 4, 7, 150):
        assert line_gamma(gamma, span, interval) == pytest.approx(gamma ** (span / interval), rel=1e-12)
    # With noise: K = 1 - line_gamma is the steady-state gain of a random walk (variance q per step) measured with
    # variance r every span steps. Iterating the filter's own recursion, P <- P + q * span, K = P / (P + r),
    # P <- (1 - K) P, from P = 0 until it settles, is the oracle; q / r is fixed by K = 1 - gamma at span = interval.
    rho = (1.0 - gamma) ** 2 / gamma / interval
    for span in (1, interval, 3 * interval, 150):
        covariance = 0.0
        for _ in range(100_000):
            prior = covariance + rho * span  # r = 1
            gain = prior / (prior + 1.0)
            covariance = (1.0 - gain) * prior
        assert 1.0 - line_gamma(gamma, span, interval, noisy=True) == pytest.approx(gain, rel=1e-9), span
    assert line_gamma(gamma, interval, interval, noisy=True) == pytest.approx(gamma, rel=1e-12)
    # Longer lines weigh more, but less than the noiseless memory gives them past one interval, and never all.
    spans = (interval, 2 * interval, 10 * interval, 1000 * interval)
    noisy = [line_gamma(gamma, span, interval, noisy=True) for span in spans]
    assert noisy == sorted(noisy, reverse=True) and noisy[-1] > 0.0
    assert all(n > gamma ** (span / interval) for n, span in zip(noisy[1:], spans[1:], strict=True))


def test_line_gamma_at_the_defaults_and_without_smoothing():
    # gamma 0.9 every 4 steps: the 150-step windows of a 3,000-step run weigh a line 0.47, not 0.98
    assert line_gamma(0.9, 150, 4, noisy=True) == pytest.approx(0.530, abs=1e-3)
    assert line_gamma(0.9, 150, 4) == pytest.approx(0.019, abs=1e-3)
    assert line_gamma(0.9, 8, 4, noisy=True) == pytest.approx(0.862, abs=1e-3)
    assert line_gamma(0.0, 150, 4, noisy=True) == 0.0 and line_gamma(0.0, 150, 4) == 0.0
