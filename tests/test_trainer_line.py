"""The GeN step through the real Trainer against closed forms: a plain-optimizer replay on an exact quadratic,
single-layer formulas, a full-Hessian oracle, the next-batch fit and the cosine shape."""

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from hf_gen import GeNTrainer, GeNTrainingArguments

from tiny import MLP, Dummy, Quadratic, Regression, Tilted, gen_args, logged_lrs, read_trace

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


# ---- the next-batch fit and the default shape ----------------------------------------------------------------------
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


@pytest.mark.parametrize("decay,warmup", [("cosine", 0), ("none", 0), ("cosine", 0.25), ("none", 0.25)])
def test_the_decay_shape_anneals_the_gen_level(tmp_path, decay, warmup):
    # "none" is the default with the default window lines: the level GeN sets is applied as it is. The Trainer's
    # warmup_steps (here a fraction: ceil(0.25 * 24) = 6 steps) comes first: the lr rises linearly to step 6 and
    # nothing is measured; GeN then starts as on a first step, and the decay runs over the steps after the warmup.
    steps = 24
    extra = {} if decay == "none" else {"gen_decay": decay}
    args = GeNTrainingArguments(output_dir=str(tmp_path), lr_scheduler_type="gen", report_to="none", use_cpu=True,
                                save_strategy="no", logging_steps=1, per_device_train_batch_size=4, max_steps=steps,
                                learning_rate=1e-2, seed=0, warmup_steps=warmup, gen_search_probes=0,
                                **extra)  # fmt: skip
    # (gen_search_probes=0: no check of GeN's first step, which after this warmup cuts 1e-2 back on its batch; the
    # trace then holds the window lines alone)
    assert args.gen_decay == decay
    trainer = GeNTrainer(model=MLP(), args=args, train_dataset=Regression())
    trainer.train()
    trace = {r["step"]: r for r in read_trace(tmp_path)}
    lrs = logged_lrs(trainer)
    W = 6 if warmup else 0

    def shape(t):  # 0-based step t of T
        rise = min((t + 1) / (W + 1), 1.0)
        return rise * (0.5 * (1 + math.cos(math.pi * max(t - W, 0) / (steps - W))) if decay == "cosine" else 1.0)

    assert lrs[:W] == pytest.approx([args.learning_rate * k / (W + 1) for k in range(1, W + 1)])  # the rise
    # Out of sample by default: the first line runs through the mean weights of GeN's steps 1-4 and 5-8 (windows of
    # gen_interval steps) and is measured on the 9th batch; a window closes every 4 steps after it (24 / 20 < 4). The
    # warmup's steps are in no window: the windows ran at the starting lr, which is the first line's unit.
    level = args.learning_rate
    assert sorted(trace) == [W + 9, W + 13, W + 17, W + 21][: (steps - W - 5) // 4]
    assert trace[W + 9]["probe_lr"] == pytest.approx(args.learning_rate, rel=1e-12)
    for k, lr in enumerate(lrs, start=1):
        if k in trace:
            level = trace[k]["lr"] / shape(k - 1)
        assert lr == pytest.approx(level * shape(k - 1), rel=1e-9)
    if decay == "cosine":
        assert lrs[-1] < 0.05 * max(lrs)
    else:  # held between updates
        assert all(lrs[k] == lrs[k - 1] for k in range(W + 1, steps) if k + 1 not in trace)  # after any warmup


@pytest.mark.parametrize("probe_batch", ["same", "next"])
def test_the_one_step_lines_start_after_the_warmup(tmp_path, probe_batch):
    # Same batch: every gen_interval-th step from GeN's first (step W + 1, 1-based) measures its own line; next batch:
    # the line of GeN's first step is measured on the next batch. Nothing is measured during the warmup.
    steps, W = 20, 5
    args = gen_args(tmp_path, max_steps=steps, warmup_steps=W, gen_probe_batch=probe_batch, gen_interval=4,
                    logging_steps=1, learning_rate=1e-2)  # fmt: skip
    GeNTrainer(model=MLP(), args=args, train_dataset=Regression()).train()
    trace = read_trace(tmp_path)
    assert trace and min(r["step"] for r in trace) == W + (1 if probe_batch == "same" else 2)


# ---- the line through two windows' mean weights ------------------------------------------------------------------
def replay_averages(tmp_path, name, *, lr0, steps, window, interval, max_change, fast_start, lines="windows",
                    tilt=0.0, jitter=False, fast_start_jitter=False, pace=False):  # fmt: skip
    """Train the exact quadratic with gen_probe_batch="averages" and no smoothing, and replay it with a plain
    optimizer: at each measured step the oracle computes ``c*``, the exact minimiser of ``L(m0 + c (m1 - m0))`` for the
    two windows' means, and moves the level as the scheduler must (to ``c*`` times it, clipped to the change bound;
    down the bound where the line does not descend). Windows are ``interval`` steps until an estimate lands inside the
    bound (the fast start), then ``window``. With ``lines="both"`` the fast start's climbs are capped by the exact
    one-step minimiser along the last step (clipped like any estimate; a level held at the cap has settled, unless the
    last step's line does not descend). Returns the trace by step, the levels the oracle set and the steps where the
    cap held the level. With ``tilt > 0`` each batch tilts the quadratic's linear term by noise of that scale
    (``Tilted``): the oracle reads each step's batch from the run and uses its own ``b`` for that step's gradient, and
    for the lines measured on it. With ``jitter`` (``gen_jitter_cost``) each line is charged with the live weights'
    excess, on the batch it opens on, over the loss at ``1 + (W - 1) / (2 W)`` on the line for the window of ``W``
    steps that closed (zero if below): ``c*`` minimises ``L(m0 + c (m1 - m0)) + c * excess``. With
    ``fast_start_jitter`` (``gen_fast_start_jitter``) only the lines measured before the fast start has settled are
    charged. With ``pace`` (``gen_pace_unit``) a line's unit is not the level at its close but the oracle's own
    weighting of the lrs the steps of its two windows ran at (``walk``), and the live weights' place on it comes from
    the same weights."""
    model = Quadratic(seed=5)
    start = copy.deepcopy(model)
    optimizer = OPTIMIZERS[name](grouped(model, lr0))
    args = gen_args(tmp_path, learning_rate=lr0, max_grad_norm=0.0, max_steps=steps, gen_probe_batch="averages",
                    gen_window=window, gen_interval=interval, gen_fast_start=fast_start, gen_gamma=0.0,
                    gen_max_change=max_change, gen_lr_max=math.inf, gen_search_probes=0,
                    gen_fast_start_lines=lines, gen_jitter_cost=jitter,
                    gen_fast_start_jitter=fast_start_jitter, gen_pace_unit=pace)  # fmt: skip
    data = Tilted(scale=tilt) if tilt else Dummy()
    trainer = RecordingGeNTrainer(model=model, args=args, train_dataset=data, optimizers=(optimizer, None))
    trainer.train()
    trace = {r["step"]: r for r in read_trace(tmp_path)}
    lrs = logged_lrs(trainer)
    assert len(lrs) == steps == len(trainer.batches)

    def b_of(k):  # the linear term of step k's batch
        tilts = trainer.batches[k - 1].get("tilt")
        return model.b if tilts is None else model.b + tilts.mean(0)

    oracle, oracle_opt = start, OPTIMIZERS[name](grouped(start, lr0))
    previous, window_sum, count, level, levels, capped = None, torch.zeros(5, dtype=torch.float64), 0, lr0, {}, []
    settled, before, last_lr = not fast_start, None, None
    span = interval if fast_start else window  # the open window's length

    def clipped(c):
        return min(max(c, 1.0 / max_change), max_change)

    def apply(k, c_star, at, one_step, cost=None):
        """The scheduler's update from a line measured at level ``at`` (and the last step's line beside it), charged
        ``cost`` (``None``: not charged)."""
        nonlocal settled, level
        if cost is not None:  # up to the rounding of float64 losses of order one
            assert trace[k]["jitter_cost"] == pytest.approx(cost, abs=1e-10)
        else:
            assert "jitter_cost" not in trace[k]
        if c_star > 0:
            # The parabola through three float64 losses: exact up to their rounding, relative to the losses'
            # differences (about 1e-4 of the loss as the windows near the minimum).
            assert trace[k]["alpha_star"] == pytest.approx(c_star * at, rel=1e-7)
            inside, new = 1.0 / max_change <= c_star <= max_change, clipped(c_star * at / level) * level
        else:  # the later mean is past the minimum: no descent along the line, the level goes down the bound
            assert trace[k]["alpha_star"] is None and trace[k]["fallback"] == "not_descent"
            inside, new = False, level / max_change
        if one_step is not None:
            assert trace[k]["one_step_alpha_star"] == pytest.approx(one_step, rel=1e-6)
            cap = max(clipped(one_step / level) * level, level)
            if new > cap:  # held at the cap: settled, if the last step's line had a minimiser of its own
                inside, new = inside or one_step > 0, cap
                capped.append(k)
        assert trace[k]["probe_lr"] == pytest.approx(at, rel=1e-7)
        settled = settled or inside
        level = levels[k] = new

    def minimiser(start, line, k, cost=None):
        """The exact minimiser along ``start + c line`` of the loss on step k's batch, charged with ``cost`` per unit
        of ``c``."""
        return float((-(oracle.A @ start - b_of(k)) @ line - (cost or 0.0)) / (line @ oracle.A @ line))

    def loss_at(theta, k):
        return float(0.5 * theta @ oracle.A @ theta - b_of(k) @ theta)

    def walk(earlier, later):
        """The line through the means of two windows run at the lrs ``earlier`` and ``later`` (one per step): the
        unit lr of its walk and the live weights' place on it. With ``u_s`` the step ``s`` took, the later mean minus
        the earlier one is ``sum_s w_s u_s``, with ``w = i / a`` for the ``i``-th step (from 0) of the earlier window
        of ``a`` steps and ``(b - j) / b`` for the ``j``-th of the later one of ``b`` steps; the live weights lie past
        the later mean by ``sum_j (j / b) u_j``."""
        a, b = len(earlier), len(later)
        weights = [i / a for i in range(a)] + [(b - j) / b for j in range(b)]
        moved = sum(w * lr for w, lr in zip(weights, earlier + later, strict=True))
        beyond = sum(j / b * lr for j, lr in enumerate(later))
        return moved / sum(weights), 1.0 + beyond / moved

    def cost_of(start, line, k, closed, position):
        """The live weights' excess on step k's batch over the point of the line they have reached (``None``: the
        line is not charged)."""
        if not (jitter or (fast_start_jitter and not settled)):
            return None
        if position is None:
            position = 1.0 + (closed - 1) / (2.0 * closed)
        return max(loss_at(oracle.theta().detach(), k) - loss_at(start + position * line, k), 0.0)

    previous_lrs, window_lrs = None, []  # the lrs the reference window's and the open window's steps ran at
    for k, lr in enumerate(lrs, start=1):
        if previous is not None and count >= span:  # this step's batch measures the line through the two means
            mean = window_sum / count
            delta = mean - previous
            unit, position = walk(previous_lrs, window_lrs) if pace else (level, None)
            cost = cost_of(previous, delta, k, span, position)
            c_star = minimiser(previous, delta, k, cost)
            one_step = None
            if before is not None:  # the last step's line, theta = before + (a / last_lr) s: its exact minimiser
                step = oracle.theta().detach() - before
                one_step = last_lr * float(-(oracle.A @ before - b_of(k)) @ step / (step @ oracle.A @ step))
            apply(k, c_star, unit, one_step, cost=cost)
            previous, window_sum, count, before = mean, torch.zeros(5, dtype=torch.float64), 0, None
            previous_lrs, window_lrs = window_lrs, []
            span = window if settled else interval  # the window opening now
        else:
            assert k not in trace
        assert lr == pytest.approx(level, rel=1e-7)  # a measurement sets the lr of the step whose batch it used
        if lines == "both" and not settled and previous is not None and count + 1 >= span:
            before, last_lr = oracle.theta().detach().clone(), lr  # this step closes a window: its line is measured
        oracle_opt.zero_grad()
        with torch.no_grad():
            grad = oracle.A @ oracle.theta() - b_of(k)
        oracle.first.grad, oracle.second.grad = grad[:3].clone(), grad[3:].clone()
        for group, ratio in zip(oracle_opt.param_groups, (1.0, RATIO), strict=True):
            group["lr"] = lr * ratio
        oracle_opt.step()
        window_sum += oracle.theta().detach()
        window_lrs.append(lr)
        count += 1
        if previous is None and count == span:  # the first window: the reference
            previous, window_sum, count = window_sum / count, torch.zeros(5, dtype=torch.float64), 0
            previous_lrs, window_lrs = window_lrs, []
    assert sorted(trace) == sorted(levels)
    # The probes put the live weights back exactly: the run ends where the replay does.
    torch.testing.assert_close(model.theta().detach(), oracle.theta().detach(), rtol=1e-10, atol=1e-12)
    return trace, levels, capped


class RecordingGeNTrainer(GeNTrainer):
    """The real GeNTrainer; it keeps each step's batch, for an oracle."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches = []

    def training_step(self, model, inputs, num_items_in_batch=None):
        self.batches.append({k: v.detach().clone() for k, v in inputs.items()})
        return super().training_step(model, inputs, num_items_in_batch)


@pytest.mark.parametrize("name", ["sgd_nesterov_wd", "adamw"])
def test_averages_line_minimiser_matches_the_quadratic_closed_form(tmp_path, name):
    # Settled from the start (no fast start), windows of 3 steps: every measurement sets the level to its estimate.
    # On the exact quadratic the parabola through the line's three probes is the loss itself.
    trace, _, _ = replay_averages(tmp_path, name, lr0=0.05, steps=16, window=3, interval=4, max_change=1e6,
                                  fast_start=False)  # fmt: skip
    # Steps 1-3 make the reference window, 4-6 the first measured one: its line is measured on step 7's batch.
    assert sorted(trace) == [7, 10, 13, 16]
    assert [r["fallback"] for r in trace.values()].count(None) >= 2


@pytest.mark.parametrize("name", ["sgd_nesterov_wd", "adamw"])
def test_averages_fast_start_measures_short_windows_until_an_estimate_lands_inside(tmp_path, name):
    # A start far too small: windows of gen_interval (2) steps, the level doubling at each (the estimate is clipped
    # to the bound, unsmoothed) until one lands inside it; then windows of gen_window (5) steps.
    trace, levels, _ = replay_averages(tmp_path, name, lr0=1e-4, steps=60, window=5, interval=2, max_change=2.0,
                                       fast_start=True)  # fmt: skip
    steps = sorted(trace)
    assert steps[:3] == [5, 7, 9]  # steps 1-2 the reference, 3-4 the first window, measured on step 5's batch
    climb = [levels[k] / levels[j] for j, k in zip(steps, steps[1:], strict=False) if k - j == 2]
    assert climb[:3] == pytest.approx([2.0, 2.0, 2.0], rel=1e-12) and len(climb) >= 4  # the fast start doubled
    settled_gaps = [k - j for j, k in zip(steps, steps[1:], strict=False) if k - j != 2]
    assert settled_gaps and set(settled_gaps) == {5}  # then the long windows


def test_lines_charged_with_the_jitter_cost_match_the_replay(tmp_path):
    # gen_jitter_cost on a quadratic whose batches tilt its linear term: the live weights jitter about the windows'
    # means, and each line's exact minimiser is charged with their excess over the point of the line they reached, on
    # the batch the line opens on. The charge moves many lines, and sends some below their start (no descent).
    trace, levels, _ = replay_averages(tmp_path, "adamw", lr0=1e-3, steps=120, window=8, interval=4,
                                       max_change=2.0, fast_start=True, lines="windows", tilt=2.0,
                                       jitter=True)  # fmt: skip
    costs = [trace[k]["jitter_cost"] for k in sorted(trace)]
    assert len(costs) >= 10 and sum(cost > 0 for cost in costs) >= 3 and min(costs) == 0.0


def test_only_the_fast_starts_lines_charged_with_the_jitter_cost_match_the_replay(tmp_path):
    # gen_fast_start_jitter on the same tilted quadratic: the fast start's lines are charged as gen_jitter_cost charges
    # them, and no line measured once the fast start has settled carries a charge.
    trace, levels, _ = replay_averages(tmp_path, "adamw", lr0=1e-3, steps=120, window=8, interval=4,
                                       max_change=2.0, fast_start=True, lines="windows", tilt=2.0,
                                       fast_start_jitter=True)  # fmt: skip
    charged = [k for k in sorted(trace) if "jitter_cost" in trace[k]]
    assert charged and sorted(trace)[: len(charged)] == charged  # the first lines, up to the one that settled
    assert sum(trace[k]["jitter_cost"] > 0 for k in charged) >= 1 and len(trace) >= len(charged) + 8


def kalman_smoothing(gamma: float, span: int, interval: int) -> float:
    """1 - K for the steady-state gain K with K**2 / (1 - K) = rho * span, rho fixed by K = 1 - gamma at span =
    interval; found by bisection, not by the library's closed form."""
    rho = (1.0 - gamma) ** 2 / gamma / interval
    low, high = 0.0, 1.0
    for _ in range(200):
        mid = (low + high) / 2.0
        low, high = (mid, high) if mid * mid / (1.0 - mid) < rho * span else (low, mid)
    return 1.0 - (low + high) / 2.0


@pytest.mark.parametrize(
    ("window", "by_count", "kalman"),
    [(4, False, False), (4, True, False), (16, True, False), (4, True, True), (16, True, True)],
)
def test_settled_lines_keep_the_smoothing_memory_in_steps(tmp_path, window, by_count, kalman):
    # Each settled line folds its estimate in with gamma ** (window / interval): the level keeps the same memory in
    # steps whether its windows are 4 or 16 steps long. With gen_smooth_by_count (the default) the k-th update after
    # the one that settled weighs at least 1 / (k + 1), so the old level's weight is min(gamma ** (window /
    # interval), k / (k + 1)). With gen_kalman_gain the window's weight is the steady-state Kalman gain instead
    # (kalman_smoothing). Closed form on the trace's own estimates and levels.
    args = gen_args(tmp_path, learning_rate=3e-2, max_steps=160, gen_probe_batch="averages", gen_interval=2,
                    gen_window=window, per_device_train_batch_size=8,
                    gen_smooth_by_count=by_count, gen_kalman_gain=kalman)  # fmt: skip
    GeNTrainer(model=MLP(seed=0), args=args, train_dataset=Regression(n=256)).train()
    trace = read_trace(tmp_path)
    settling = next(i for i, record in enumerate(trace) if record["interval"] > 1)
    checked, counted = set(), set()
    for k, (before, record) in enumerate(zip(trace[settling:], trace[settling + 1 :], strict=False), start=1):
        if record["fallback"] is not None:
            continue
        span, level = record["step"] - before["step"], before["lr"]
        target = min(max(record["alpha_star"], level / args.gen_max_change), level * args.gen_max_change)
        if kalman:
            smoothing = kalman_smoothing(args.gen_gamma, span, args.gen_interval)
        else:
            smoothing = args.gen_gamma ** (span / args.gen_interval)
        if by_count and k / (k + 1) < smoothing:
            smoothing = k / (k + 1)
            counted.add(k)
        assert record["lr"] == pytest.approx(level**smoothing * target ** (1 - smoothing), rel=1e-9), k
        checked.add(span)
    assert checked == {window}
    # The window's own memory keeps 0.9 ** 2 = 0.81 of the old level at 4 steps and 0.9 ** 8 = 0.43 at 16; the
    # Kalman gain keeps 0.86 and 0.74. The count (1/2 on the first line, 2/3 on the second) binds below them.
    if not by_count:
        assert not counted
    elif kalman:
        assert ({1, 2} if window == 4 else {1}) <= counted
    else:
        assert {1} <= counted if window == 4 else not counted


@pytest.mark.parametrize("name", ["sgd_nesterov_wd", "adamw"])
def test_averages_fast_start_climbs_only_as_far_as_the_last_steps_line_allows(tmp_path, name):
    # The default fast start ("both"): the window's line sets the level, but a climb stops at the last step's
    # one-step minimiser on the same batch; held there, the level has settled and the long windows take over.
    trace, levels, capped = replay_averages(tmp_path, name, lr0=1e-4, steps=60, window=5, interval=2,
                                            max_change=2.0, fast_start=True, lines="both")  # fmt: skip
    fast = [k for k, r in trace.items() if "one_step_alpha_star" in r]
    assert fast and sorted(trace)[: len(fast)] == fast  # the one-step lines are measured during the fast start only
    if name == "adamw":  # from 1e-4 the window's line asks for more than the last step's allows, once (step 31)
        assert capped == [fast[-1]] and levels[fast[-1]] < 2.0 * levels[fast[-2]]
        steps = sorted(trace)
        assert steps[steps.index(capped[0]) + 1] - capped[0] == 5  # settled there: the long windows follow


@pytest.mark.parametrize(
    ("name", "lines", "jitter"),
    [("adamw", "windows", False), ("sgd_nesterov_wd", "both", True), ("adamw", "windows", True)],
)
def test_lines_in_units_of_the_lr_their_steps_ran_at_match_the_replay(tmp_path, name, lines, jitter):
    # gen_pace_unit: each line's unit is the oracle's own weighting of the lrs its two windows' steps ran at, not the
    # level at its close, and the live weights' place on it (for the jitter's charge) comes from the same weights.
    # During the fast start the level doubles between windows, so the unit lies below the level the line closed at.
    trace, levels, _ = replay_averages(tmp_path, name, lr0=1e-4, steps=90, window=6, interval=3, max_change=2.0,
                                       fast_start=True, lines=lines, tilt=1.0, jitter=jitter, pace=True)  # fmt: skip
    steps = sorted(trace)
    level_before = {k: (levels[j] if j else 1e-4) for j, k in zip([None, *steps], steps, strict=False)}
    below = [k for k in steps if trace[k]["probe_lr"] < 0.95 * level_before[k]]
    assert below and len(steps) >= 10
