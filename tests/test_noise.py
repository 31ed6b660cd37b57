"""A fast-start line its batch's sampling noise does not resolve holds the level (``gen_fast_start_noise``): the test
against scipy's paired t-test, the chunks against the model's own per-example losses, the scheduler's move against its
closed form, and real Trainer runs (the level held on unresolved lines, and a run whose every line resolves bit for bit
the run without the option)."""

import math
import re

import numpy as np
import pytest
import torch
from scipy import stats

from hf_gen import GeNTrainer
from hf_gen.core import NOISE_CHUNKS, NOISE_Z, LineEstimate, probes_resolved, student_t_quantile
from hf_gen.line import RngState, batch_rows, cut_rows
from hf_gen.scheduler import next_level
from hf_gen.schemes import StepRecord

from tiny import MLP, Quadratic, Regression, Tilted, gen_args, read_trace

TAIL = 2 * stats.norm.sf(NOISE_Z)  # two-sided


@pytest.mark.parametrize("seed", range(30))
def test_a_line_is_resolved_when_scipys_paired_t_test_tells_a_pair_of_probes_apart(seed):
    """Random chunk counts, spreads and differences between three probes, from none to well past the threshold: the
    verdict is whether any pair's paired t-test (scipy, two-sided) rejects at the tail of z = 2, away from the
    boundary the quantile's approximation blurs; ``t_max`` is the largest |t| of scipy's."""
    rng = np.random.default_rng(200 + seed)
    m = int(rng.integers(3, 40))
    base = rng.normal(2.0, 0.3, m)  # the chunks differ a lot in level: only the paired differences matter
    sd = float(rng.uniform(0.001, 0.05))
    shift = rng.uniform(0.0, 6.0) * sd / math.sqrt(m)
    chunks = [base, base + shift + rng.normal(0.0, sd, m), base + 2 * shift + rng.normal(0.0, sd, m)]
    resolved, t_max, used = probes_resolved([c.tolist() for c in chunks])
    assert used == m
    tests = [stats.ttest_rel(chunks[j], chunks[k]) for j in range(3) for k in range(j + 1, 3)]
    assert t_max == pytest.approx(max(abs(t.statistic) for t in tests), rel=1e-9)
    p = min(t.pvalue for t in tests)
    if abs(math.log(p / TAIL)) > 0.1:
        assert resolved == (p < TAIL)


def test_no_test_without_three_finite_chunks_and_non_finite_chunks_are_left_out():
    assert probes_resolved([[1.0, 2.0], [1.5, 2.5]]) == (None, pytest.approx(math.nan, nan_ok=True), 2)
    assert probes_resolved([[1.0, 2.0, math.nan], [1.5, 2.5, 3.0]])[0] is None
    clean = [[1.0, 2.0, 3.0, 4.0], [1.1, 2.05, 3.2, 4.1]]
    dirty = [[1.0, 2.0, 3.0, 4.0, math.inf], [1.1, 2.05, 3.2, 4.1, 0.0]]
    assert probes_resolved(dirty) == probes_resolved(clean)
    # a difference without scatter: resolved (infinitely many standard errors), or no difference at all: not
    assert probes_resolved([[1.0, 2.0, 3.0], [1.5, 2.5, 3.5]]) == (True, math.inf, 3)
    assert probes_resolved([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]) == (False, 0.0, 3)
    assert probes_resolved(dirty)[2] == 4  # the row with a non-finite loss is left out


def test_the_threshold_is_students_t_at_the_normal_tail_of_two_deviations():
    # m chunks with differences d +- e, e alternating in sign: mean d, sd e * sqrt(m / (m - 1)), t = d / (sd / sqrt m)
    m, e = 16, 0.01
    threshold = student_t_quantile(NOISE_Z, m - 1)
    assert threshold == pytest.approx(stats.t.isf(stats.norm.sf(NOISE_Z), m - 1), rel=0.01)
    for factor, verdict in ((0.97, False), (1.03, True)):
        se = e * math.sqrt(m / (m - 1)) / math.sqrt(m)
        d = factor * threshold * se
        start = [0.0] * m
        end = [d + e * (-1) ** j for j in range(m)]
        resolved, t_max, _ = probes_resolved([start, end])
        assert t_max == pytest.approx(factor * threshold, rel=1e-9) and resolved is verdict


def test_below_noise_keeps_the_level_settled_or_not():
    noise = LineEstimate(None, 0.1, 0.2, 1.0, False, "below_noise")
    for settled in (False, True):
        assert next_level(1e-6, noise, gamma=0.0, max_change=2.0, settled=settled) == (1e-6, "below_noise", False)


def test_a_micro_batch_is_cut_along_its_batch_dimension_only():
    inputs = {"x": torch.arange(12.0).reshape(6, 2), "labels": torch.arange(6), "scale": torch.tensor(2.0),
              "mask": torch.ones(3, 6), "name": "rows"}  # fmt: skip
    assert batch_rows(inputs) == 6
    piece = cut_rows(inputs, 6, 4, 8)
    assert piece["x"].tolist() == [[8.0, 9.0], [10.0, 11.0]] and piece["labels"].tolist() == [4, 5]
    assert piece["scale"] is inputs["scale"] and piece["mask"] is inputs["mask"] and piece["name"] == "rows"
    assert batch_rows([torch.ones(3)]) is None and batch_rows({"n": 3, "s": torch.tensor(1.0)}) is None


def chunk_trainer(tmp_path, per_device, accumulation=1):
    args = gen_args(tmp_path, per_device_train_batch_size=per_device, gradient_accumulation_steps=accumulation,
                    gen_probe_batch="averages", gen_fast_start_noise=2.0)  # fmt: skip
    model = MLP(n_in=4, hidden=8, seed=0, dtype=torch.float64)
    return GeNTrainer(model=model, args=args, train_dataset=Regression(n=64, dtype=torch.float64)), model


def per_example(model, rows):
    """The oracle: each row's squared error from the model's own output."""
    with torch.no_grad():
        return ((model(rows["x"])["logits"] - rows["labels"]) ** 2).tolist()


def test_the_chunks_are_the_mean_losses_of_equal_runs_of_rows(tmp_path):
    trainer, model = chunk_trainer(tmp_path, per_device=20)
    data = Regression(n=20, dtype=torch.float64)
    rows = {"x": data.x, "labels": data.y}
    rng = RngState(torch.device("cpu"))
    chunks = trainer._gen_chunk_losses(StepRecord(True, [(rows, rng)]))
    errors = per_example(model, rows)
    size = math.ceil(20 / NOISE_CHUNKS)  # 2: ten chunks
    assert chunks.dtype == torch.float64 and len(chunks) == 10
    assert chunks.tolist() == pytest.approx([sum(errors[i : i + size]) / size for i in range(0, 20, size)], rel=1e-12)
    # a short last batch (7 rows): the chunks it has, the rest nan, the same length on every rank
    short = {"x": data.x[:7], "labels": data.y[:7]}
    chunks = trainer._gen_chunk_losses(StepRecord(True, [(short, rng)]))
    expected = [sum(errors[i : min(i + size, 7)]) / len(errors[i : min(i + size, 7)]) for i in range(0, 7, size)]
    assert len(chunks) == 10 and chunks[:4].tolist() == pytest.approx(expected, rel=1e-12)
    assert torch.isnan(chunks[4:]).all()


def test_the_chunks_of_accumulated_micro_batches_are_single_rows(tmp_path):
    trainer, model = chunk_trainer(tmp_path, per_device=8, accumulation=2)  # 16 rows: NOISE_CHUNKS of one row
    data = Regression(n=16, dtype=torch.float64)
    rng = RngState(torch.device("cpu"))
    batch = [({"x": data.x[i : i + 8], "labels": data.y[i : i + 8]}, rng) for i in (0, 8)]
    chunks = trainer._gen_chunk_losses(StepRecord(True, batch))
    assert chunks.tolist() == pytest.approx(per_example(model, {"x": data.x, "labels": data.y}), rel=1e-12)


def noise_run(tmp_path, noise, lr, steps=16, quadratic=False, **kwargs):
    """Windows of 2 steps from ``lr``, the fast start's lines tested (or not) against their batch of 16 rows: a small
    tanh network on a noisy regression, or (``quadratic``) an exact quadratic whose rows tilt it a little."""
    args = gen_args(tmp_path, per_device_train_batch_size=16, gen_probe_batch="averages", gen_interval=2,
                    learning_rate=lr, max_steps=steps, gen_fast_start_noise=noise, gen_search_probes=0,
                    **kwargs)  # fmt: skip
    if quadratic:
        model, data = Quadratic(), Tilted(n=256, scale=0.01)
    else:
        model, data = MLP(n_in=4, hidden=16, seed=0, dtype=torch.float64), Regression(n=256, dtype=torch.float64)
    trainer = GeNTrainer(model=model, args=args, train_dataset=data)
    trainer.train()
    return read_trace(tmp_path), trainer


def test_fast_start_lines_the_noise_does_not_resolve_hold_the_level(tmp_path):
    """On the noisy regression (float64: far above the loss's precision) the first lines' probes lie within their
    batch's noise at any starting lr: each such line keeps the level exactly and does not end the fast start, where
    the run without the test moves the level on them; the verdicts follow the threshold of Student's t for 16
    single-row chunks, and only the lines that resolved move the level."""
    trace, _ = noise_run(tmp_path / "noise", 2.0, 1e-3, steps=30)
    threshold = student_t_quantile(NOISE_Z, 16 - 1)
    tested = [r for r in trace if r.get("noise_t") is not None]
    assert tested and tested[0]["fallback"] == "below_noise" and tested[0]["lr"] == 1e-3
    for r in tested:
        assert (r["noise_t"] <= threshold) == (r["fallback"] == "below_noise") and r["noise_chunks"] == 16
    level = 1e-3
    for r in tested:
        if r["fallback"] == "below_noise":
            assert r["lr"] == level and r["interval"] == 1  # held, and the fast start goes on
        level = r["lr"]
    moved = [r for r in tested if r["fallback"] != "below_noise"]
    assert moved and all(r["noise_t"] > threshold for r in moved)  # the level moves on resolved lines only
    plain, _ = noise_run(tmp_path / "plain", None, 1e-3, steps=30)
    assert all(r.get("noise_t") is None and r["fallback"] != "below_noise" for r in plain)
    assert plain[0]["lr"] != 1e-3  # the run without the test moved the level on the line the test held


def test_a_run_whose_lines_all_resolve_is_the_run_without_the_test(tmp_path):
    """The chunks' forwards replay the batch's random state and put the buffers back: when every line resolves (the
    quadratic's rows tilt it by little), the run is bit for bit the run without the test."""
    trace, tested = noise_run(tmp_path / "noise", 2.0, 1e-2, quadratic=True)
    assert [r for r in trace if r.get("noise_t") is not None] and all(r["fallback"] != "below_noise" for r in trace)
    plain, untested = noise_run(tmp_path / "plain", None, 1e-2, quadratic=True)
    assert [r["lr"] for r in trace] == [r["lr"] for r in plain]
    for a, b in zip(tested.model.parameters(), untested.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_at_zero_deviations_the_statistic_is_recorded_and_every_line_acts_as_without_the_test(tmp_path):
    """``gen_fast_start_noise=0``: the diagnostic. On the noisy regression, where two deviations hold lines, every
    fast-start line records its statistic and the run is bit for bit the run without the test."""
    trace, recorded = noise_run(tmp_path / "zero", 0.0, 1e-3, steps=30)
    held, _ = noise_run(tmp_path / "two", 2.0, 1e-3, steps=30)
    assert any(r["fallback"] == "below_noise" for r in held)
    tested = [r for r in trace if r.get("noise_t") is not None]
    assert tested and trace[: len(tested)] == tested and all(r["fallback"] != "below_noise" for r in trace)
    assert tested[0]["noise_t"] == pytest.approx(held[0]["noise_t"], rel=1e-12)  # the same first line, then apart
    plain, untested = noise_run(tmp_path / "plain", None, 1e-3, steps=30)
    assert [r["lr"] for r in trace] == [r["lr"] for r in plain]
    for a, b in zip(recorded.model.parameters(), untested.model.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"gen_fast_start_noise": -1.0}, "standard errors"),
        ({"gen_fast_start_noise": True}, "standard errors"),
        ({"gen_fast_start_noise": math.inf}, "standard errors"),
        ({"gen_fast_start_noise": 2.0, "gen_fast_start_batches": 2}, "gen_fast_start_batches=1"),
        ({"gen_fast_start_noise": 2.0, "gen_probe_batch": "next"}, "gen_probe_batch='averages'"),
        ({"gen_fast_start_noise": 2.0, "gen_fast_start": False}, "gen_fast_start=True"),
    ],
)
def test_bad_noise_settings_say_what_to_pass(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        gen_args(tmp_path, **{"gen_probe_batch": "averages", **kwargs})
