"""A settled level rises only after a window whose training loss fell (``gen_raise_needs_progress``): the test
against scipy's Welch test, and a real Trainer run checked against the losses it logged."""

import math
import statistics

import numpy as np
import pytest
import torch
from scipy import stats

from hf_gen import GeNTrainer
from hf_gen.core import LOST_WINDOW_Z, WindowStats, made_progress

from tiny import Quadratic, Tilted, gen_args, read_trace

TAIL = stats.norm.sf(LOST_WINDOW_Z)


@pytest.mark.parametrize("seed", range(30))
def test_progress_is_welchs_one_sided_test_for_a_fall(seed):
    """Two windows of random lengths and spreads, the later one lower by none to well past the threshold: the verdict
    is scipy's Welch test (``alternative="less"``) at P(Z > 3), away from the boundary the quantile's approximation
    blurs; the standard error is Welch's."""
    rng = np.random.default_rng(100 + seed)
    n_b, n_a = (int(x) for x in rng.integers(4, 60, size=2))
    s_b, s_a = (float(x) for x in rng.uniform(0.05, 0.5, size=2))
    before, after = rng.normal(1.0, s_b, n_b), rng.normal(1.0, s_a, n_a)
    se = math.sqrt(before.var(ddof=1) / n_b + after.var(ddof=1) / n_a)
    after = after - rng.uniform(0.0, 8.0) * se
    test = stats.ttest_ind(after, before, equal_var=False, alternative="less")
    progress, se_used = made_progress(WindowStats(before.mean(), before.var(ddof=1), n_b),
                                      WindowStats(after.mean(), after.var(ddof=1), n_a))  # fmt: skip
    assert se_used == pytest.approx(se, rel=1e-12)
    if abs(math.log(test.pvalue / TAIL)) > 0.1:
        assert progress == (test.pvalue < TAIL)


def test_no_progress_without_two_finite_windows():
    steady = WindowStats(1.0, 0.04, 20)
    assert not made_progress(WindowStats(2.0, 0.04, 1), steady)[0]
    assert not made_progress(steady, WindowStats(0.5, 0.04, 1))[0]
    assert not made_progress(WindowStats(math.inf, math.nan, 20), steady)[0]  # the earlier window diverged
    assert not made_progress(steady, WindowStats(math.nan, math.nan, 20))[0]
    assert not made_progress(steady, WindowStats(1.5, 0.04, 20))[0]  # a rise is no progress
    assert made_progress(steady, WindowStats(0.5, 0.04, 20))[0]
    assert made_progress(WindowStats(1.0, 0.0, 5), WindowStats(1.0 - 1e-9, 0.0, 5)) == (True, 0.0)


def gated_run(out, gate, resume=None, **kwargs):
    """Plain SGD on an exact quadratic whose every batch tilts its linear term a little (known noise), windows of 5
    steps from the start: the loss falls fast at first, then flattens, while the lines keep asking for more."""
    args = gen_args(out, max_steps=60, per_device_train_batch_size=4, gen_probe_batch="averages", gen_window=5,
                    gen_fast_start=False, gen_raise_needs_progress=gate, optim="sgd", weight_decay=0.0,
                    learning_rate=0.05, **kwargs)  # fmt: skip
    trainer = GeNTrainer(model=Quadratic(), args=args, train_dataset=Tilted(n=240, scale=0.1))
    trainer.train(resume_from_checkpoint=resume)
    return read_trace(out), trainer


def test_a_settled_level_rises_only_after_a_window_whose_loss_fell(tmp_path):
    """Windows of steps 1-5, 6-10, ... close on the next step's batch. Each line's record carries the two windows'
    mean training losses (the oracle: the losses the Trainer logged, rounded to 4 digits), and the level rose
    exactly where scipy's Welch test on those logged losses finds the later window lower at the three-sigma tail;
    elsewhere a line that would raise it holds it (``no_progress``). The run has both. Without the option the same
    run is the same up to the first hold, which it raises."""
    trace, trainer = gated_run(tmp_path / "on", gate=True)
    logged = {h["step"]: h["loss"] for h in trainer.state.log_history if "loss" in h}
    previous_lr, verdicts = 0.05, []
    for record in trace:
        s = record["step"]
        before, after = ([logged[t] for t in range(s - k - 5, s - k)] for k in (5, 0))
        assert record["window_losses"] == pytest.approx([statistics.fmean(before), statistics.fmean(after)],
                                                        abs=1e-4)  # fmt: skip
        test = stats.ttest_ind(after, before, equal_var=False, alternative="less")
        if abs(math.log(test.pvalue / TAIL)) > 0.5:  # rounded losses: away from the threshold only
            progress = test.pvalue < TAIL
            verdicts.append(progress)
            if not progress:
                assert record["lr"] <= previous_lr
        if record["fallback"] == "no_progress":
            assert record["lr"] == previous_lr and record["alpha_star"] > previous_lr
        if record["lr"] > previous_lr:
            assert test.pvalue < TAIL
        previous_lr = record["lr"]
    assert True in verdicts and False in verdicts
    held = [r["step"] for r in trace if r["fallback"] == "no_progress"]
    risen = [r["step"] for r, p in zip(trace[1:], trace, strict=False) if r["lr"] > p["lr"]]
    assert held and risen
    trace_off, _ = gated_run(tmp_path / "off", gate=False)
    first = next(i for i, r in enumerate(trace) if r["step"] == held[0])
    assert [r["lr"] for r in trace_off[:first]] == [r["lr"] for r in trace[:first]]
    assert trace_off[first]["lr"] > trace[first]["lr"]


@pytest.mark.parametrize("line_batches,save", [(1, 13), (2, 16)])
def test_a_resumed_run_holds_and_raises_where_the_whole_run_did(tmp_path, line_batches, save):
    """The open window's losses and the last window's verdict go with the checkpoint: inside a window (step 13), and
    with a line measured on two batches open across it (opened at step 16's close, applied on step 17's batch). The
    resumed run's lines, levels and records are the whole run's."""
    kwargs = dict(gen_line_batches=line_batches, save_strategy="steps", save_steps=save)
    full, _ = gated_run(tmp_path, gate=True, **kwargs)
    saved = torch.load(tmp_path / f"checkpoint-{save}" / "gen_pending_line-rank0.pt", weights_only=True)
    assert "progress" in saved and saved["window_losses"]["count"] == {13: 3, 16: 1}[save]
    assert ("open_line" in saved) == (line_batches > 1)
    resumed, _ = gated_run(tmp_path, gate=True, resume=str(tmp_path / f"checkpoint-{save}"), **kwargs)
    assert resumed == full
    assert any(r["fallback"] == "no_progress" for r in full)
