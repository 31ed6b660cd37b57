"""Taking back a window that lost ground (``gen_undo_lost_windows``): the test against Student's t and Welch's
statistic from scipy, the window's loss statistics against the standard library's, and a real Trainer run whose data
shift makes a window lose ground, against the weights a callback recorded."""

import math
import statistics

import numpy as np
import pytest
import torch
from scipy import stats
from transformers import TrainerCallback

from hf_gen import GeNTrainer
from hf_gen.core import LOST_WINDOW_Z, WindowStats, lost_ground, student_t_quantile
from hf_gen.line import WindowLosses

from tiny import MLP, Shifted, gen_args, read_trace

TAIL = stats.norm.sf(LOST_WINDOW_Z)  # the three-sigma rule's one-sided tail probability


@pytest.mark.parametrize(
    "dof,rel", [(3, 0.023), (4, 7e-3), (6, 1.1e-3), (10, 1e-4), (30, 1e-6), (100, 1e-8), (1000, 1e-12)]
)
def test_the_t_quantile_matches_scipys(dof, rel):
    assert student_t_quantile(LOST_WINDOW_Z, dof) == pytest.approx(stats.t.isf(TAIL, dof), rel=rel)
    assert student_t_quantile(LOST_WINDOW_Z, math.inf) == LOST_WINDOW_Z


@pytest.mark.parametrize("seed", range(40))
def test_the_verdict_is_welchs_one_sided_test_at_the_three_sigma_tail(seed):
    """Two windows of random lengths and spreads, the later one shifted by about the threshold: the verdict is
    scipy's Welch test (``ttest_ind(equal_var=False)``, one-sided) at P(Z > 3), away from the boundary the quantile's
    approximation blurs; the standard error is Welch's."""
    rng = np.random.default_rng(seed)
    n_b, n_a = (int(x) for x in rng.integers(4, 60, size=2))
    s_b, s_a = (float(x) for x in rng.uniform(0.05, 0.5, size=2))
    before, after = rng.normal(1.0, s_b, n_b), rng.normal(1.0, s_a, n_a)
    se = math.sqrt(before.var(ddof=1) / n_b + after.var(ddof=1) / n_a)
    after = after + rng.uniform(0.0, 8.0) * se  # a rise from none to well past the threshold
    test = stats.ttest_ind(after, before, equal_var=False, alternative="greater")
    lost, se_used = lost_ground(WindowStats(before.mean(), before.var(ddof=1), n_b),
                                WindowStats(after.mean(), after.var(ddof=1), n_a))  # fmt: skip
    assert se_used == pytest.approx(se, rel=1e-12)
    if abs(math.log(test.pvalue / TAIL)) > 0.1:  # not within 10% of the threshold's tail probability
        assert lost == (test.pvalue < TAIL)


def test_what_says_nothing_and_what_always_loses():
    steady = WindowStats(1.0, 0.04, 20)
    assert lost_ground(WindowStats(1.0, 0.04, 1), WindowStats(9.0, 0.04, 20)) == (False, pytest.approx(math.nan,
                                                                                  nan_ok=True))  # fmt: skip
    assert not lost_ground(WindowStats(math.nan, 0.04, 20), steady)[0]
    assert lost_ground(steady, WindowStats(math.inf, math.nan, 20))[0]  # diverged
    assert lost_ground(steady, WindowStats(math.nan, math.nan, 20))[0]
    assert not lost_ground(steady, WindowStats(0.5, 0.04, 20))[0]  # a fall never loses
    assert lost_ground(WindowStats(1.0, 0.0, 5), WindowStats(1.0 + 1e-9, 0.0, 5)) == (True, 0.0)  # no noise at all
    assert lost_ground(WindowStats(1.0, 0.0, 5), WindowStats(1.0, 0.0, 5)) == (False, 0.0)


def test_window_losses_are_the_mean_and_sample_variance_of_the_steps():
    losses = [0.91, 1.3, 0.72, 1.05, 0.99, 1.21]
    window = WindowLosses()
    for x in losses:
        window.add(torch.tensor(x, dtype=torch.float32))
    window.add(None)  # a step without a loss is not counted
    closed = window.close(lambda t: t, settled=True)
    f32 = [float(torch.tensor(x, dtype=torch.float32)) for x in losses]
    assert closed == (pytest.approx(statistics.fmean(f32), rel=1e-12),
                      pytest.approx(statistics.variance(f32), rel=1e-9), 6, True)  # fmt: skip
    assert window.count == 0 and window.steps == []
    assert window.close(lambda t: t, settled=False).count == 0
    # Over processes, each step's loss is the processes' mean (the global batch's) before the statistics: here a
    # second process's losses, averaged in by the reduction.
    other = [0.5, 1.9, 1.1]
    for x in losses[:3]:
        window.add(torch.tensor(x, dtype=torch.float64))
    closed = window.close(lambda t: (t + torch.tensor(other, dtype=torch.float64)) / 2, settled=False)
    steps = [(a + b) / 2 for a, b in zip(losses[:3], other, strict=True)]
    assert closed[:3] == (pytest.approx(statistics.fmean(steps), rel=1e-12),
                          pytest.approx(statistics.variance(steps), rel=1e-12), 3)  # fmt: skip


# ---- in the Trainer ----------------------------------------------------------------------------------------------


class Recorder(TrainerCallback):
    """The weights after each optimizer step, and the (clipped) gradients the optimizer stepped with."""

    def __init__(self, model):
        self.model, self.weights, self.grads = model, [], []

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.grads.append({n: p.grad.detach().double().clone() for n, p in self.model.named_parameters()})

    def on_step_end(self, args, state, control, **kwargs):
        self.weights.append({n: p.detach().double().clone() for n, p in self.model.named_parameters()})


def shifted_run(out, undo, shift=6.0, stop=80, resume=None, **kwargs):
    """Plain SGD, windows of 5 steps from the start (no fast start), rows in order: over steps 16 to 20 (rows 60 to
    79 of batches of 4) the targets jump (from step 16 on if ``stop`` is ``None``), so the window of those steps
    trains on rows unlike the rest and closes on step 21's batch."""
    kwargs = {"learning_rate": 0.2, **kwargs}
    args = gen_args(out, max_steps=30, per_device_train_batch_size=4, gen_probe_batch="averages",
                    gen_window=5, gen_fast_start=False, gen_undo_lost_windows=undo, optim="sgd", weight_decay=0.0,
                    train_sampling_strategy="sequential", **kwargs)  # fmt: skip
    model = MLP(seed=0)
    recorder = Recorder(model)
    trainer = GeNTrainer(model=model, args=args, train_dataset=Shifted(n=160, start=60, shift=shift, stop=stop),
                         callbacks=[recorder])  # fmt: skip
    trainer.train(resume_from_checkpoint=resume)
    return read_trace(out), recorder, trainer


def test_a_window_that_lost_ground_is_taken_back_to_the_previous_windows_mean(tmp_path):
    """The windows are steps 1-5 (the reference), 6-10, 11-15, 16-20, ... and each closes on the next step's batch.
    The targets of steps 16 to 20 jump, so their window's training loss rises, and on step 21's batch (like the
    earlier ones) its mean is worse than the earlier window's: it lost ground. On step 21 the weights go back to the
    mean of the weights after steps 11 to 15 (the oracle: a callback's record of them), SGD then takes step 21 from
    there with the gradient it computed, at the level halved, and the line is not applied. The record carries both
    windows' mean training losses (the oracle: the losses the Trainer logged) and the standard error. Without the
    option the same run keeps its weights; without the jump nothing is taken back; and when the targets stay
    shifted, the later mean is the better one on the new rows: the window's loss rose because the data changed,
    and it is kept."""
    trace, recorder, trainer = shifted_run(tmp_path / "on", undo=True)
    lost = [r for r in trace if r["fallback"] == "lost_window"]
    assert [r["step"] for r in lost] == [21]
    record = lost[0]
    before = next(r for r in reversed(trace) if r["step"] < 21)
    assert record["lr"] == pytest.approx(before["lr"] / 2.0, rel=1e-12)  # the change bound, unsmoothed
    (_, start), (_, end) = record["probe_losses"][:2]
    assert end > start and record["alpha_star"] is None
    logged = {h["step"]: h["loss"] for h in trainer.state.log_history if "loss" in h}
    for got, steps in zip(record["window_losses"], (range(11, 16), range(16, 21)), strict=True):
        assert got == pytest.approx(statistics.fmean(logged[s] for s in steps), abs=1e-4)  # logs round to 4 digits
    w, g = recorder.weights, recorder.grads  # w[i] / g[i]: after / of step i + 1
    for n in w[0]:
        mean = sum(w[s - 1][n] for s in range(11, 16)) / 5
        torch.testing.assert_close(w[20][n], mean - record["lr"] * g[20][n], rtol=0, atol=1e-6)
    # Off: the same weights up to step 20, then the run goes on from the lost window's last weights.
    trace_off, recorder_off, _ = shifted_run(tmp_path / "off", undo=False)
    assert not any(r["fallback"] == "lost_window" for r in trace_off)
    assert all(torch.equal(a[n], b[n]) for a, b in zip(recorder_off.weights[:20], w[:20], strict=True) for n in a)
    assert any(not torch.equal(recorder_off.weights[20][n], w[20][n]) for n in w[20])
    # No jump, no undo.
    trace_flat, _, _ = shifted_run(tmp_path / "flat", undo=True, shift=0.0)
    assert not any(r["fallback"] == "lost_window" for r in trace_flat)
    trace_moved, _, _ = shifted_run(tmp_path / "moved", undo=True, stop=None)
    assert not any(r["fallback"] == "lost_window" for r in trace_moved)


def test_a_resume_between_the_jump_and_the_undo_takes_the_same_window_back(tmp_path):
    """The open window's loss sums and the reference window's statistics go with the checkpoint (step 18, inside the
    window that loses ground): the resumed run takes the same window back at step 21 and ends on the same weights,
    bit for bit. Without the saved statistics it has no reference to compare with, and keeps the window."""
    full_trace, full, _ = shifted_run(tmp_path, undo=True, save_strategy="steps", save_steps=18)
    saved = torch.load(tmp_path / "checkpoint-18" / "gen_pending_line-rank0.pt", weights_only=True)
    assert saved["window_losses"]["count"] == 3 and saved["window_losses"]["previous"][2] == 5
    resumed_trace, resumed, _ = shifted_run(tmp_path, undo=True, save_strategy="steps", save_steps=18,
                                            resume=str(tmp_path / "checkpoint-18"))  # fmt: skip
    assert resumed_trace == full_trace
    assert all(torch.equal(resumed.weights[-1][n], full.weights[-1][n]) for n in full.weights[-1])
    del saved["window_losses"]
    torch.save(saved, tmp_path / "checkpoint-18" / "gen_pending_line-rank0.pt")
    forgot, _, _ = shifted_run(tmp_path, undo=True, save_strategy="steps", save_steps=18,
                               resume=str(tmp_path / "checkpoint-18"))  # fmt: skip
    assert not any(r["fallback"] == "lost_window" for r in forgot)


def test_a_window_taken_back_puts_the_lines_clocks_back_too(tmp_path):
    """gen_pace_unit: after the window of steps 16-20 is taken back on step 21, the weights are the mean of steps 11-15
    and so are the steps' clocks. The next line, through that mean and the mean of steps 21-25 (all at the halved
    level), was walked from the restored mean at that level alone: its unit is that level. Clocks left at the lost
    window would mix in the level before the halving."""
    trace, _, _ = shifted_run(tmp_path, undo=True, gen_pace_unit=True)
    assert [r["step"] for r in trace if r["fallback"] == "lost_window"] == [21]
    lost = next(r for r in trace if r["step"] == 21)
    line = next(r for r in trace if r["step"] == 26)
    assert line["probe_lr"] == pytest.approx(lost["lr"], rel=1e-12)
