"""GeNTrainer on the real Trainer with real optimizers: each test checks a number against a closed form or an
independent oracle (a plain optimizer replay, a full Hessian, the stock Trainer)."""

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn
from transformers import Trainer, TrainingArguments

from hf_gen import GeNTrainer, GeNTrainingArguments
from hf_gen.scheduler import GeNEstimateError

from tiny import MLP, Dummy, Quadratic, Regression, Tokens, read_trace, tiny_gpt2


def gen_args(tmp_path, **kwargs):
    base = dict(
        output_dir=str(tmp_path),
        lr_scheduler_type="gen",
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        logging_steps=1,
        per_device_train_batch_size=4,
        max_steps=6,
        seed=0,
        gen_decay="none",  # the mechanics under test; the default cosine shape has its own test
        gen_probe_batch="same",  # the closed forms below are of the step's own line; the next-batch fit has its own
    )
    base.update(kwargs)
    return GeNTrainingArguments(**base)


def logged_lrs(trainer):
    return [h["learning_rate"] for h in trainer.state.log_history if "learning_rate" in h]


# ---- the direction is the optimizer's real step; its state advances once; the weights are the chosen step ----

OPTIMIZERS = {
    "sgd_nesterov_wd": lambda groups: torch.optim.SGD(groups, lr=1.0, momentum=0.9, nesterov=True, weight_decay=0.05),
    "sgd_plain": lambda groups: torch.optim.SGD(groups, lr=1.0),
    "adam_l2": lambda groups: torch.optim.Adam(groups, lr=1.0, weight_decay=0.05),
    "adamw": lambda groups: torch.optim.AdamW(groups, lr=1.0, weight_decay=0.1),
}
RATIO = 0.3  # group 1 runs at 0.3 x group 0's lr (layer-wise lr ratio)


def grouped(model, lr):
    return [{"params": [model.first], "lr": lr}, {"params": [model.second], "lr": lr * RATIO}]


@pytest.mark.parametrize("mode", ["approx", "exact"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_quadratic_direction_state_and_weights_match_a_plain_optimizer_replay(tmp_path, name, mode):
    lr0, max_norm, steps = 0.05, 0.5, 9
    model = Quadratic()
    start = copy.deepcopy(model)
    optimizer = OPTIMIZERS[name](grouped(model, lr0))
    args = gen_args(tmp_path, learning_rate=lr0, max_grad_norm=max_norm, max_steps=steps, gen_interval=2,
                    gen_mode=mode, gen_lr_max=math.inf)  # fmt: skip
    trainer = GeNTrainer(model=model, args=args, train_dataset=Dummy(), optimizers=(optimizer, None))
    trainer.train()
    trace = {r["step"]: r for r in read_trace(tmp_path)}
    lrs = logged_lrs(trainer)
    assert len(lrs) == steps and len(trace) >= 3

    # Oracle: the same optimizer on a copy, fed the closed-form gradient A t - b, clipped by torch, stepped at the
    # lr the Trainer logged. At each GeN step, d is read off a trial step of a copy of the oracle.
    oracle = start
    oracle_opt = OPTIMIZERS[name](grouped(oracle, lr0))
    params = [oracle.first, oracle.second]
    for k, lr in enumerate(lrs, start=1):
        oracle_opt.zero_grad()
        with torch.no_grad():
            grad = oracle.A @ oracle.theta() - oracle.b
        oracle.first.grad, oracle.second.grad = grad[:3].clone(), grad[3:].clone()
        torch.nn.utils.clip_grad_norm_(params, max_norm)
        if k in trace:
            trial_model, trial_opt = copy.deepcopy((oracle, oracle_opt))
            trial_model.first.grad, trial_model.second.grad = oracle.first.grad.clone(), oracle.second.grad.clone()
            for group, ratio in zip(trial_opt.param_groups, (1.0, RATIO), strict=True):
                group["lr"] = ratio  # lr 1: the step per unit lr
            trial_opt.step()
            with torch.no_grad():
                d = oracle.theta() - trial_model.theta()
                slope, curvature = float(grad @ d), float(d @ oracle.A @ d)
            assert trace[k]["slope"] == pytest.approx(slope, rel=1e-9)
            assert trace[k]["curvature"] == pytest.approx(curvature, rel=1e-6 if mode == "approx" else 1e-9)
            if slope > 0:
                assert trace[k]["alpha_star"] == pytest.approx(slope / curvature, rel=1e-6)
            else:  # momentum can point uphill on this batch: no estimate, recorded
                assert trace[k]["alpha_star"] is None and trace[k]["fallback"] == "not_descent"
            assert trace[k]["lr"] == pytest.approx(lr, rel=1e-12)
        for group, ratio in zip(oracle_opt.param_groups, (1.0, RATIO), strict=True):
            group["lr"] = lr * ratio
        oracle_opt.step()

    torch.testing.assert_close(model.theta().detach(), oracle.theta().detach(), rtol=1e-10, atol=1e-12)
    state, oracle_state = optimizer.state[model.first], oracle_opt.state[oracle.first]
    for key, value in oracle_state.items():
        torch.testing.assert_close(state[key], value, rtol=1e-10, atol=1e-12)
    if "step" in oracle_state:
        assert float(state["step"]) == steps  # advanced exactly once per optimizer step


def test_adamw_step_count_and_moments_equal_a_plain_adamw_on_the_same_gradients(tmp_path):
    # Item 2 in the words of the issue, on a nonlinear network with the Trainer's own AdamW and param groups.
    torch.manual_seed(0)
    model = MLP(seed=1)
    args = gen_args(tmp_path, learning_rate=1e-2, max_steps=7, gen_interval=1, max_grad_norm=0.0)
    seen = []

    class Record(GeNTrainer):
        def _gen_before_optimizer_step(self, optimizer, a, k):
            seen.append({n: p.grad.clone() for n, p in self.model.named_parameters()})
            super()._gen_before_optimizer_step(optimizer, a, k)

    trainer = Record(model=model, args=args, train_dataset=Regression())
    trainer.train()
    plain_model = MLP(seed=1)
    plain = torch.optim.AdamW(plain_model.parameters(), lr=1e-2, weight_decay=0.0)
    for grads in seen:
        for n, p in plain_model.named_parameters():
            p.grad = grads[n]
        plain.step()
    inner = trainer.optimizer.optimizer
    by_name = dict(model.named_parameters())
    for n, p in plain_model.named_parameters():
        state = inner.state[by_name[n]]
        assert float(state["step"]) == 7
        torch.testing.assert_close(state["exp_avg"], plain.state[p]["exp_avg"], rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(state["exp_avg_sq"], plain.state[p]["exp_avg_sq"], rtol=1e-6, atol=1e-12)


# ---- closed forms of a single piecewise-linear layer and a full-Hessian oracle ----------------------------------


class SingleLayer(nn.Module):
    """y_hat = sigma(W x + b) with loss 1/(2M) sum_i ||y_hat_i - y_i||^2 (exact GeN for SGD on one layer)."""

    def __init__(self, n0, n1, negative_slope=0.0, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = nn.Parameter(torch.randn(n1, n0, generator=g, dtype=torch.float64))
        self.b = nn.Parameter(torch.randn(n1, generator=g, dtype=torch.float64))
        self.negative_slope = negative_slope

    def forward(self, x, labels):
        z = x @ self.W.T + self.b
        y_hat = torch.nn.functional.leaky_relu(z, self.negative_slope)
        return {"loss": 0.5 * ((y_hat - labels) ** 2).sum(-1).mean()}


class Pairs(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i]}


def boxed_alpha(W, b, x, y, negative_slope):
    """The closed-form a* = num / den of exact GeN for SGD on a piecewise-linear layer with M examples, in numpy."""
    z = x @ W.T + b
    slope_act = np.where(z > 0, 1.0, negative_slope)
    e = np.where(z > 0, z, negative_slope * z) - y
    M = len(x)
    K = 1.0 + x @ x.T
    num = sum(K[i, j] * np.dot(slope_act[i] * slope_act[j] * e[j], e[i]) for i in range(M) for j in range(M))
    den = sum(
        K[i, j] * K[i, k] * np.dot(slope_act[i] * slope_act[j] * e[j], slope_act[i] * slope_act[k] * e[k])
        for i in range(M)
        for j in range(M)
        for k in range(M)
    )
    return M * num / den


@pytest.mark.parametrize("mode", ["exact", "approx"])
def test_single_relu_layer_one_example_gives_one_over_one_plus_xtx(tmp_path, mode):
    x = torch.tensor([[0.3, -1.2, 0.7]], dtype=torch.float64)
    model = SingleLayer(3, 4, seed=3)
    with torch.no_grad():
        model.b.copy_(torch.tensor([0.5, 0.4, -0.3, 0.2], dtype=torch.float64))  # some units active
    y = torch.tensor([[0.1, -0.4, 0.9, 1.5]], dtype=torch.float64)
    args = gen_args(tmp_path, learning_rate=1e-4, max_steps=1, per_device_train_batch_size=1, optim="sgd",
                    max_grad_norm=0.0, gen_mode=mode, weight_decay=0.0, gen_search_probes=0)  # fmt: skip
    GeNTrainer(model=model, args=args, train_dataset=Pairs(x, y)).train()
    (record,) = read_trace(tmp_path)
    assert record["alpha_star"] == pytest.approx(1.0 / (1.0 + float(x @ x.T)), rel=1e-6)


@pytest.mark.parametrize("mode", ["exact", "approx"])
def test_leaky_layer_batch_matches_the_boxed_general_m_formula(tmp_path, mode):
    g = torch.Generator().manual_seed(5)
    M, n0, n1 = 5, 3, 4
    x = torch.randn(M, n0, generator=g, dtype=torch.float64)
    y = torch.randn(M, n1, generator=g, dtype=torch.float64)
    model = SingleLayer(n0, n1, negative_slope=0.1, seed=7)
    W, b = model.W.detach().numpy().copy(), model.b.detach().numpy().copy()
    args = gen_args(tmp_path, learning_rate=1e-5, max_steps=1, per_device_train_batch_size=M, optim="sgd",
                    max_grad_norm=0.0, gen_mode=mode, weight_decay=0.0, dataloader_drop_last=True,
                    gen_search_probes=0)  # fmt: skip
    GeNTrainer(model=model, args=args, train_dataset=Pairs(x, y)).train()
    (record,) = read_trace(tmp_path)
    expected = boxed_alpha(W, b, x.numpy(), y.numpy(), 0.1)
    assert record["alpha_star"] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("mode,rel", [("exact", 1e-9), ("approx", 1e-3)])
def test_curvature_matches_the_full_hessian_of_a_tiny_nonlinear_model(tmp_path, mode, rel):
    model = MLP(n_in=3, hidden=4, seed=2, dtype=torch.float64)
    data = Regression(n=8, n_in=3, dtype=torch.float64)
    start = copy.deepcopy(model)
    args = gen_args(tmp_path, learning_rate=1e-5, max_steps=1, per_device_train_batch_size=8, optim="sgd",
                    max_grad_norm=0.0, gen_mode=mode, weight_decay=0.0, gen_search_probes=0)  # fmt: skip
    GeNTrainer(model=model, args=args, train_dataset=data).train()
    (record,) = read_trace(tmp_path)

    names = [n for n, _ in start.named_parameters()]
    shapes = [p.shape for _, p in start.named_parameters()]
    flat0 = torch.cat([p.detach().reshape(-1) for _, p in start.named_parameters()])

    def loss_of(flat):
        params, i = {}, 0
        for n, s in zip(names, shapes, strict=True):
            params[n] = flat[i : i + s.numel()].reshape(s)
            i += s.numel()
        return torch.func.functional_call(start, params, (data.x, data.y))["loss"]

    grad = torch.autograd.functional.jacobian(loss_of, flat0)
    hessian = torch.autograd.functional.hessian(loss_of, flat0)
    d = grad  # plain SGD: the step per unit lr is the gradient
    assert record["slope"] == pytest.approx(float(grad @ d), rel=1e-9)
    assert record["curvature"] == pytest.approx(float(d @ hessian @ d), rel=rel)


# ---- gradient accumulation sees the whole effective batch -------------------------------------------------------


@pytest.mark.parametrize(
    "kind,rel",
    [
        # GPT-2: loss normalised by num_items_in_batch over uneven padding; its loss is computed in float32, so
        # the secant curvature carries float32 rounding (~1e-5 per fit), compounded over six updates.
        ("causal_lm", 2e-3),
        # float64 MLP with a mean loss (the Trainer divides by the accumulation steps): equal to rounding.
        ("mlp64", 1e-9),
    ],
)
def test_accumulation_two_by_two_equals_one_by_four(tmp_path, kind, rel):
    traces = []
    for bs, ga in ((4, 1), (2, 2)):
        if kind == "causal_lm":
            model, data = tiny_gpt2(seed=0), Tokens()
        else:
            model, data = MLP(seed=0, dtype=torch.float64), Regression(dtype=torch.float64)
        args = gen_args(tmp_path / f"{bs}x{ga}", learning_rate=1e-3, max_steps=6, gen_interval=1,
                        per_device_train_batch_size=bs, gradient_accumulation_steps=ga)  # fmt: skip
        GeNTrainer(model=model, args=args, train_dataset=data).train()
        traces.append(read_trace(tmp_path / f"{bs}x{ga}"))
    one, two = traces
    assert len(one) == len(two) == 6
    for a, b in zip(one, two, strict=True):
        assert b["lr"] == pytest.approx(a["lr"], rel=rel)
        assert b["alpha_star"] == pytest.approx(a["alpha_star"], rel=rel)
        assert b["loss"] == pytest.approx(a["loss"], rel=rel)
        assert b["probe_losses"][0][1] == pytest.approx(a["probe_losses"][0][1], rel=rel)


def test_accumulation_probe_loss_equals_the_full_batch_loss_at_the_stepped_weights(tmp_path):
    # Independent oracle: evaluate the stepped model on all micro-batches of the step by hand.
    model = tiny_gpt2(seed=1)
    data = Tokens(n=8, seed=3)
    args = gen_args(tmp_path, learning_rate=1e-3, max_steps=1, per_device_train_batch_size=2,
                    gradient_accumulation_steps=4, gen_lr_max=math.inf, gen_max_change=1.0, gen_fast_start=False,
                    dataloader_drop_last=True)  # fmt: skip
    trainer = GeNTrainer(model=model, args=args, train_dataset=data)
    trainer.train()
    (record,) = read_trace(tmp_path)
    # max_change=1 pins the lr, so the final weights are the probe point itself.
    assert record["lr"] == pytest.approx(1e-3)
    model.eval()
    with torch.no_grad():
        labels = data.ids.clone()
        for i, n in enumerate(data.lengths):
            labels[i, n:] = -100
        logits = model(input_ids=data.ids, attention_mask=(labels != -100).long()).logits[:, :-1]
        target = labels[:, 1:]
        total = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                            ignore_index=-100, reduction="sum")  # fmt: skip
    # The Trainer's own normaliser: tokens counted over the whole step (shifted or not, as the Trainer decides;
    # transformers 5.24 counts unshifted labels for a GPT-2 built from a config without `loss_type`).
    counted = target if trainer._loss_shifts_labels else labels
    assert record["loss"] is not None
    assert record["probe_losses"][0][1] == pytest.approx(float(total / (counted != -100).sum()), rel=1e-6)


# ---- same randomness for every point of one fit; buffers untouched by probes -------------------------------------


def dropout_masks(trainer_cls, args, model):
    masks = []
    model.drop.register_forward_hook(lambda m, i, o: masks.append(((o == 0) & (i[0] != 0), torch.is_grad_enabled())))
    trainer_cls(model=model, args=args, train_dataset=Regression()).train()
    return masks


def test_probes_replay_the_training_dropout_masks_and_leave_the_rng_streams_alone(tmp_path):
    args = gen_args(tmp_path / "gen", learning_rate=1e-2, max_steps=4, gen_interval=1, per_device_train_batch_size=2,
                    gradient_accumulation_steps=2)  # fmt: skip
    masks = dropout_masks(GeNTrainer, args, MLP(dropout=0.5))
    probes = [len(r["probe_losses"]) for r in read_trace(tmp_path / "gen")]  # > 1 where the fast start searched
    assert len(probes) == 4 and max(probes) > 1
    # Per step: two training forwards, then two probe forwards (one per micro-batch) per probe point.
    assert len(masks) == sum(2 + 2 * n for n in probes)
    start = 0
    for n in probes:
        (t1, g1), (t2, g2), *probe = masks[start : start + 2 + 2 * n]
        start += 2 + 2 * n
        assert g1 and g2 and not torch.equal(t1, t2)
        for (p1, h1), (p2, h2) in zip(probe[::2], probe[1::2], strict=True):
            assert not h1 and not h2
            assert torch.equal(p1, t1) and torch.equal(p2, t2)
    plain_args = TrainingArguments(output_dir=str(tmp_path / "plain"), report_to="none", use_cpu=True,
                                   save_strategy="no", max_steps=4, per_device_train_batch_size=2,
                                   gradient_accumulation_steps=2, learning_rate=1e-2, seed=0)  # fmt: skip
    plain = dropout_masks(Trainer, plain_args, MLP(dropout=0.5))
    training = [m for m, grad in masks if grad]
    assert all(torch.equal(a, b) for (a, _), b in zip(plain, training, strict=True))


def test_probes_do_not_touch_batchnorm_running_stats(tmp_path):
    # BatchNorm sits on the raw inputs, so its statistics depend on the data alone: they must equal the stock
    # Trainer's after the same steps, and count only the training forwards.
    common = dict(report_to="none", use_cpu=True, save_strategy="no", max_steps=3, per_device_train_batch_size=4,
                  gradient_accumulation_steps=2, learning_rate=1e-2, seed=0)  # fmt: skip
    gen_model, plain_model = MLP(batchnorm=True), MLP(batchnorm=True)
    GeNTrainer(model=gen_model, args=gen_args(tmp_path / "g", gen_interval=1, **common),
               train_dataset=Regression()).train()  # fmt: skip
    Trainer(model=plain_model, args=TrainingArguments(output_dir=str(tmp_path / "p"), **common),
            train_dataset=Regression()).train()  # fmt: skip
    assert int(gen_model.norm.num_batches_tracked) == 6
    torch.testing.assert_close(gen_model.norm.running_mean, plain_model.norm.running_mean, rtol=0, atol=0)
    torch.testing.assert_close(gen_model.norm.running_var, plain_model.norm.running_var, rtol=0, atol=0)


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


# ---- resume ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("probe_batch,interval", [("same", 2), ("next", 2), ("next", 1)])
def test_resume_from_checkpoint_gives_the_same_lr_trace_and_weights(tmp_path, probe_batch, interval):
    def run(resume=None):
        args = gen_args(tmp_path, learning_rate=1e-2, max_steps=12, gen_interval=interval, save_strategy="steps",
                        save_steps=6, per_device_train_batch_size=4, gen_probe_batch=probe_batch)  # fmt: skip
        model = MLP(dropout=0.2, seed=0)
        trainer = GeNTrainer(model=model, args=args, train_dataset=Regression(n=96))
        trainer.train(resume_from_checkpoint=resume)
        return read_trace(tmp_path), {n: p.detach().clone() for n, p in model.named_parameters()}, trainer

    full_trace, full_weights, _ = run()
    pending = sorted(p.name for p in (tmp_path / "checkpoint-6").glob("gen_pending_line-*"))
    # The next-batch scheme leaves the line of the step just taken to be measured on the next batch: when one is
    # open at the checkpoint, the copy of the weights before that step goes with it.
    assert pending == (["gen_pending_line-rank0.pt"] if probe_batch == "next" and 7 in {r["step"] for r in full_trace}
                       else [])  # fmt: skip
    resumed_trace, resumed_weights, trainer = run(resume=str(tmp_path / "checkpoint-6"))
    assert [r["step"] for r in resumed_trace] == [r["step"] for r in full_trace]
    assert len(full_trace) >= 5
    for a, b in zip(full_trace, resumed_trace, strict=True):
        assert a == b
    for n in full_weights:
        torch.testing.assert_close(resumed_weights[n], full_weights[n], rtol=0, atol=0)
    if pending:  # without the saved line, the resumed run would miss the update of step 7
        (tmp_path / "checkpoint-6" / pending[0]).unlink()
        lost_trace, _, _ = run(resume=str(tmp_path / "checkpoint-6"))
        assert 7 not in {r["step"] for r in lost_trace}


# ---- reporting: gen/* in the Trainer's logs ----------------------------------------------------------------------


def test_gen_metrics_reach_log_history_as_floats_equal_to_the_trace(tmp_path):
    args = gen_args(tmp_path, learning_rate=1e-2, max_steps=8, gen_interval=2, logging_steps=2)
    trainer = GeNTrainer(model=MLP(), args=args, train_dataset=Regression())
    trainer.train()
    trace = {r["step"]: r for r in read_trace(tmp_path)}
    logs = [h for h in trainer.state.log_history if "gen/lr" in h]
    assert [h["step"] for h in logs] == [2, 4, 6, 8]
    for h in logs:
        latest = trace[max(s for s in trace if s <= h["step"])]
        assert isinstance(h["gen/lr"], float) and h["gen/lr"] == latest["lr"]
        # An undefined estimate (a fallback) is left out of that log rather than logged as NaN.
        assert h.get("gen/alpha_star") == latest["alpha_star"] and h.get("gen/curvature") == latest["curvature"]
        assert h["learning_rate"] == pytest.approx(latest["lr"])
        assert isinstance(h["gen/fallbacks"], float)


@pytest.mark.parametrize("offsets", [[1.0], [-1.0, 1.0]])
def test_offloaded_snapshot_gives_the_same_run(tmp_path, offsets):
    runs = []
    for offload in (False, True):
        model = MLP(seed=3, dropout=0.1)
        args = gen_args(tmp_path / str(offload), learning_rate=1e-2, max_steps=5, gen_interval=1,
                        gen_offload_snapshot=offload, gen_probe_offsets=offsets)  # fmt: skip
        trainer = GeNTrainer(model=model, args=args, train_dataset=Regression())
        devices = []
        original = trainer._gen_after_optimizer_step

        def spy(optimizer, a, k, original=original, trainer=trainer, devices=devices):
            devices.append({t.device.type for t in trainer._gen_snapshot.theta0})
            original(optimizer, a, k)

        trainer._gen_after_optimizer_step = spy  # the optimizer hooks are bound when train() creates the scheduler
        trainer.train()
        runs.append((read_trace(tmp_path / str(offload)), [p.detach().clone() for p in model.parameters()], devices))
    (trace_a, weights_a, _), (trace_b, weights_b, devices_b) = runs
    assert trace_a == trace_b
    assert all(torch.equal(a, b) for a, b in zip(weights_a, weights_b, strict=True))
    assert devices_b == [{"cpu"}] * 5


def test_the_trainers_model_card_names_the_gen_scheduler(tmp_path):
    args = gen_args(tmp_path, learning_rate=1e-3, max_steps=2, per_device_train_batch_size=2)
    trainer = GeNTrainer(model=tiny_gpt2(), args=args, train_dataset=Tokens())
    trainer.train()
    trainer.create_model_card(model_name="tiny-gen")
    card = (tmp_path / "README.md").read_text()
    assert "lr_scheduler_type: gen" in card


@pytest.mark.parametrize("name", ["sgd_nesterov_wd", "adamw"])
def test_next_batch_fit_of_the_previous_line_matches_the_quadratic_closed_form(tmp_path, name):
    # Every batch of the quadratic has the same loss, so the out-of-sample fit of step k's line on step k+1's batch
    # must return the exact minimiser along that line: <grad L(theta_k), d_k> / d_k^T A d_k, applied from step k+1.
    lr0, steps = 0.05, 7
    model = Quadratic(seed=4)
    start = copy.deepcopy(model)
    optimizer = OPTIMIZERS[name](grouped(model, lr0))
    args = gen_args(tmp_path, learning_rate=lr0, max_grad_norm=0.0, max_steps=steps, gen_interval=1,
                    gen_probe_batch="next", gen_lr_max=math.inf)  # fmt: skip
    trainer = GeNTrainer(model=model, args=args, train_dataset=Dummy(), optimizers=(optimizer, None))
    trainer.train()
    trace = {r["step"]: r for r in read_trace(tmp_path)}
    lrs = logged_lrs(trainer)
    assert sorted(trace) == list(range(2, steps + 1)) and lrs[0] == lr0
    oracle, oracle_opt = start, OPTIMIZERS[name](grouped(start, lr0))
    for k, lr in enumerate(lrs, start=1):
        oracle_opt.zero_grad()
        with torch.no_grad():
            theta = oracle.theta().clone()
            grad = oracle.A @ theta - oracle.b
        oracle.first.grad, oracle.second.grad = grad[:3].clone(), grad[3:].clone()
        for group, ratio in zip(oracle_opt.param_groups, (1.0, RATIO), strict=True):
            group["lr"] = lr * ratio
        oracle_opt.step()
        with torch.no_grad():
            d = (theta - oracle.theta()) / lr
            slope, curvature = float(grad @ d), float(d @ oracle.A @ d)
        if k + 1 in trace:
            record = trace[k + 1]
            assert record["probe_lr"] == pytest.approx(lr, rel=1e-12)
            assert record["curvature"] == pytest.approx(curvature, rel=1e-6)
            if slope > 0:
                assert record["alpha_star"] == pytest.approx(slope / curvature, rel=1e-6)
            assert lrs[k] == pytest.approx(record["lr"], rel=1e-12)  # the estimate sets step k+1's lr
    torch.testing.assert_close(model.theta().detach(), oracle.theta().detach(), rtol=1e-10, atol=1e-12)


def test_default_cosine_shape_anneals_the_gen_level(tmp_path):
    steps = 12
    args = GeNTrainingArguments(output_dir=str(tmp_path), lr_scheduler_type="gen", report_to="none", use_cpu=True,
                                save_strategy="no", logging_steps=1, per_device_train_batch_size=4, max_steps=steps,
                                learning_rate=1e-2, seed=0)  # fmt: skip
    assert args.gen_decay == "cosine"
    trainer = GeNTrainer(model=MLP(), args=args, train_dataset=Regression())
    trainer.train()
    trace = {r["step"]: r for r in read_trace(tmp_path)}
    lrs = logged_lrs(trainer)

    def shape(t):  # 0-based step t of T
        return 0.5 * (1 + math.cos(math.pi * t / steps))

    level = args.learning_rate  # out of sample by default: the first line is measured on the second batch
    assert min(trace) == 2
    for k, lr in enumerate(lrs, start=1):
        if k in trace:
            level = trace[k]["lr"] / shape(k - 1)
        assert lr == pytest.approx(level * shape(k - 1), rel=1e-9)
    assert lrs[-1] < 0.05 * max(lrs)
