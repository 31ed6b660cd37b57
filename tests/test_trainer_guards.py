"""Guards: what GeN does with unusable estimates, far-off starts and bounds, through the real Trainer."""

import math

import pytest
import torch
from torch import nn

from hf_gen import GeNTrainer
from hf_gen.scheduler import GeNEstimateError

from tiny import Dummy, Quadratic, gen_args, read_trace

# ---- guards ------------------------------------------------------------------------------------------------------


class Concave(nn.Module):
    def __init__(self):
        super().__init__()
        self.t = nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))

    def forward(self, x=None):
        return {"loss": -0.5 * (self.t**2).sum()}


class Cliff(nn.Module):
    """1/2 ||t||^2, but infinite outside the box |t_i| < 1.5."""

    def __init__(self):
        super().__init__()
        self.t = nn.Parameter(torch.ones(3, dtype=torch.float64))

    def forward(self, x=None):
        loss = 0.5 * (self.t**2).sum()
        return {"loss": torch.where(self.t.abs().max() < 1.5, loss, torch.full_like(loss, math.inf))}


def test_negative_curvature_along_a_descent_direction_grows_the_lr_and_is_recorded(tmp_path):
    args = gen_args(tmp_path, learning_rate=0.1, max_steps=4, gen_interval=1, optim="sgd", max_grad_norm=0.0,
                    weight_decay=0.0, gen_search_probes=0)  # fmt: skip
    model = Concave()
    trainer = GeNTrainer(model=model, args=args, train_dataset=Dummy())
    trainer.train()
    trace = read_trace(tmp_path)
    assert [r["fallback"] for r in trace] == ["nonpositive_curvature"] * 4
    # lr x gen_max_change per update, capped by gen_lr_max = 1.0
    assert [r["lr"] for r in trace] == pytest.approx([0.2, 0.4, 0.8, 1.0]) and all(
        r["alpha_star"] is None for r in trace
    )
    assert all(r["curvature"] == pytest.approx(-r["slope"], rel=1e-9) for r in trace)  # g'' = -|g|^2 = -slope
    assert [h["gen/fallbacks"] for h in trainer.state.log_history if "gen/fallbacks" in h] == [1.0, 2.0, 3.0, 4.0]
    assert torch.isfinite(model.t).all()
    # SGD on -|t|^2/2 multiplies t by (1 + lr) per step.
    growth = 1.2 * 1.4 * 1.8 * 2.0
    torch.testing.assert_close(model.t.detach(), torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) * growth)


def test_error_policy_raises_after_the_search_with_the_weights_at_the_optimizers_step(tmp_path):
    # Concave loss: the search looks further up to gen_lr_max, finds no usable estimate, and "error" raises; the
    # weights are left where SGD's own step put them (t0 (1 + lr)), not at the farthest probe.
    args = gen_args(tmp_path, learning_rate=0.1, max_steps=2, gen_interval=1, optim="sgd", max_grad_norm=0.0,
                    weight_decay=0.0, gen_fallback="error")  # fmt: skip
    model = Concave()
    start = model.t.detach().clone()
    with pytest.raises(GeNEstimateError, match="nonpositive_curvature"):
        GeNTrainer(model=model, args=args, train_dataset=Dummy()).train()
    torch.testing.assert_close(model.t.detach(), start * 1.1, rtol=1e-12, atol=0.0)


def test_nonfinite_probe_loss_shrinks_the_lr_and_training_goes_on(tmp_path):
    args = gen_args(tmp_path, learning_rate=3.0, max_steps=3, gen_interval=1, optim="sgd", max_grad_norm=0.0,
                    weight_decay=0.0, gen_lr_max=10.0, gen_search_probes=0)  # fmt: skip
    model = Cliff()
    GeNTrainer(model=model, args=args, train_dataset=Dummy()).train()
    first, *rest = read_trace(tmp_path)
    assert first["fallback"] == "nonfinite_loss" and first["lr"] == 1.5 and first["probe_losses"] == [[3.0, None]]
    assert rest[0]["fallback"] is None and rest[0]["alpha_star"] == pytest.approx(1.0)  # Hessian I: a* = 1
    assert torch.isfinite(model.t).all() and float(model.t.abs().max()) < 1.5


def test_estimate_above_the_bound_is_capped_and_recorded(tmp_path):
    args = gen_args(tmp_path, learning_rate=1e-3, max_steps=4, gen_interval=1, optim="sgd", max_grad_norm=0.0,
                    weight_decay=0.0, gen_lr_max=1e-3, gen_max_change=math.inf)  # fmt: skip
    GeNTrainer(model=Quadratic(), args=args, train_dataset=Dummy()).train()
    trace = read_trace(tmp_path)
    assert all(r["fallback"] == "above_max" and r["lr"] == 1e-3 and r["alpha_star"] > 1e-3 for r in trace)


@pytest.mark.parametrize("factor", [1e3, 1e-4])
def test_fast_start_search_takes_the_closed_form_lr_on_the_first_step_from_a_far_off_start(tmp_path, factor):
    # Plain SGD on the exact quadratic: d = g, so a* = g.g / g.A.g (closed form). From a start 1000x too large or
    # 10^4x too small the search re-probes the first step's line until the estimate lands near its probe; the step
    # is then taken at a* itself, and the weights are theta0 - a* g.
    model = Quadratic()
    with torch.no_grad():
        t0 = model.theta().clone()
        g = model.A @ t0 - model.b
        a_star = float(g @ g / (g @ model.A @ g))
    args = gen_args(tmp_path, learning_rate=factor * a_star, max_steps=1, optim="sgd", max_grad_norm=0.0,
                    weight_decay=0.0, gen_lr_max=math.inf)  # fmt: skip
    GeNTrainer(model=model, args=args, train_dataset=Dummy()).train()
    (record,) = read_trace(tmp_path)
    assert record["lr"] == pytest.approx(a_star, rel=1e-9) and record["fallback"] is None
    probes = [a for a, _ in record["probe_losses"]]
    assert probes[0] == pytest.approx(factor * a_star) and 2 <= len(probes) <= 1 + args.gen_search_probes
    for a, loss in record["probe_losses"]:  # every probe is the loss on the line, in closed form
        t = t0 - a * g
        assert loss == pytest.approx(float(0.5 * t @ model.A @ t - model.b @ t), rel=1e-9)
    torch.testing.assert_close(model.theta().detach(), t0 - a_star * g, rtol=1e-9, atol=1e-12)

    # Without the search the first step moves at most gen_max_change from the start.
    plain = Quadratic()
    out = tmp_path / "plain"
    args = gen_args(out, learning_rate=factor * a_star, max_steps=1, optim="sgd", max_grad_norm=0.0,
                    weight_decay=0.0, gen_lr_max=math.inf, gen_search_probes=0)  # fmt: skip
    GeNTrainer(model=plain, args=args, train_dataset=Dummy()).train()
    (record,) = read_trace(out)
    expected = factor * a_star / 2.0 if factor > 1 else factor * a_star * 2.0
    assert record["lr"] == pytest.approx(expected, rel=1e-9) and len(record["probe_losses"]) == 1


def test_out_of_sample_default_cuts_a_first_step_that_overshoots_on_its_own_batch(tmp_path):
    # Plain SGD on the exact quadratic: along d = g the loss is below its start exactly for a < 2 a* (closed form).
    # From 1000 a* the first step is cut 8-fold until it lands there: 1000 / 8**3 a* = 1.95 a*, after four probes;
    # the second step is then measured out of sample from that radius (the quadratic is the same on every batch).
    model = Quadratic()
    with torch.no_grad():
        t0 = model.theta().clone()
        g = model.A @ t0 - model.b
        a_star = float(g @ g / (g @ model.A @ g))
    args = gen_args(tmp_path, learning_rate=1000 * a_star, max_steps=2, optim="sgd", max_grad_norm=0.0,
                    weight_decay=0.0, gen_lr_max=math.inf, gen_probe_batch="next")  # fmt: skip
    trainer = GeNTrainer(model=model, args=args, train_dataset=Dummy())
    trainer.train()
    first, second = read_trace(tmp_path)
    assert first["step"] == 1 and first["fallback"] == "overshot" and first["probe_batch"] == "same"
    assert [a for a, _ in first["probe_losses"]] == pytest.approx([1000 * a_star / 8**k for k in range(4)], rel=1e-12)
    for a, loss in first["probe_losses"]:
        t = t0 - a * g
        assert loss == pytest.approx(float(0.5 * t @ model.A @ t - model.b @ t), rel=1e-9)
    assert first["lr"] == pytest.approx(1000 * a_star / 8**3, rel=1e-12)
    assert second["step"] == 2 and second["probe_lr"] == pytest.approx(first["lr"], rel=1e-12)
    assert second["alpha_star"] == pytest.approx(a_star, rel=1e-9)  # the first line, measured on the next batch
    # A start that lowers the loss on its own batch is left alone: no record for step 1.
    out = tmp_path / "fine"
    args = gen_args(out, learning_rate=0.5 * a_star, max_steps=2, optim="sgd", max_grad_norm=0.0,
                    weight_decay=0.0, gen_lr_max=math.inf, gen_probe_batch="next")  # fmt: skip
    GeNTrainer(model=Quadratic(), args=args, train_dataset=Dummy()).train()
    assert [r["step"] for r in read_trace(out)] == [2]
