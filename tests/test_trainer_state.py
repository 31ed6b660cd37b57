"""Resume, logs, the offloaded copy and the model card: the state GeN leaves behind is exact and visible."""

import functools
import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from hf_gen import GeNTrainer

from tiny import MLP, Regression, Tokens, gen_args, read_trace, tiny_gpt2

# ---- the adaptive interval ------------------------------------------------------------------------------------


@pytest.mark.parametrize("probe_batch", ["same", "next"])
def test_adaptive_interval_spends_forwards_where_the_trace_says(tmp_path, probe_batch):
    """Each record's ``interval`` is the gap to the next record, and it follows the rule on the record's own numbers:
    doubled (up to gen_max_interval) when the estimate lands inside the change bound around the lr it was measured
    against, [lr / 2, 2 lr], back to gen_interval otherwise."""
    args = gen_args(tmp_path, learning_rate=1e-2, max_steps=60, gen_interval=2, gen_max_interval=8,
                    gen_probe_batch=probe_batch, per_device_train_batch_size=32)  # fmt: skip
    GeNTrainer(model=MLP(seed=0), args=args, train_dataset=Regression(n=1024)).train()
    trace = read_trace(tmp_path)
    settled = [i for i, r in enumerate(trace) if r["interval"] > 1]
    assert settled and len(trace) - settled[0] >= 5
    for before, after in zip(trace, trace[1:], strict=False):
        assert after["step"] - before["step"] == before["interval"]
    for before, record in zip(trace[settled[0] :], trace[settled[0] + 1 :], strict=False):
        level, alpha = before["lr"], record["alpha_star"]
        steady = record["fallback"] is None and alpha is not None and level / 2 <= alpha <= level * 2
        assert record["interval"] == (min(2 * before["interval"], 8) if steady else 2)
    assert max(r["interval"] for r in trace) == 8  # it did lengthen: the run is steady enough to reach the cap


# ---- resume ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "probe_batch,interval,max_interval", [("same", 2, None), ("next", 2, None), ("next", 1, None), ("next", 1, 4)]
)
def test_resume_from_checkpoint_gives_the_same_lr_trace_and_weights(tmp_path, probe_batch, interval, max_interval):
    def run(resume=None):
        args = gen_args(tmp_path, learning_rate=1e-2, max_steps=12, gen_interval=interval, save_strategy="steps",
                        save_steps=6, per_device_train_batch_size=4, gen_probe_batch=probe_batch,
                        gen_max_interval=max_interval)  # fmt: skip
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


def train_averages(tmp_path, resume=None, **kwargs):
    """An MLP with dropout trained on the averages scheme, checkpointing every ``save_steps`` (resumed from ``resume``
    if given): its trace and final weights."""
    args = gen_args(tmp_path, save_strategy="steps", per_device_train_batch_size=4, gen_probe_batch="averages",
                    **kwargs)  # fmt: skip
    model = MLP(dropout=0.2, seed=0)
    trainer = GeNTrainer(model=model, args=args, train_dataset=Regression(n=160))
    trainer.train(resume_from_checkpoint=resume)
    return read_trace(tmp_path), {n: p.detach().clone() for n, p in model.named_parameters()}


def test_resume_of_the_averages_scheme_keeps_its_windows(tmp_path):
    """gen_probe_batch="averages" carries the running sum of the open window and the previous window's mean across a
    checkpoint: the resumed run's trace and weights are the uninterrupted run's, bit for bit."""

    run = functools.partial(train_averages, tmp_path, learning_rate=1e-2, max_steps=30, save_steps=14, gen_window=4)

    full_trace, full_weights = run()
    saved = torch.load(tmp_path / "checkpoint-14" / "gen_pending_line-rank0.pt", weights_only=True)
    assert "previous" in saved and 0 < saved["count"] < 4  # mid-window, with a reference window behind it
    assert sum(r["probe_batch"] == "averages" and len(r["probe_losses"]) == 3 for r in full_trace) >= 3
    resumed_trace, resumed_weights = run(resume=str(tmp_path / "checkpoint-14"))
    assert resumed_trace == full_trace
    for n in full_weights:
        torch.testing.assert_close(resumed_weights[n], full_weights[n], rtol=0, atol=0)
    (tmp_path / "checkpoint-14" / "gen_pending_line-rank0.pt").unlink()  # without it the windows start over
    assert run(resume=str(tmp_path / "checkpoint-14"))[0] != full_trace


def test_resume_keeps_the_clocks_of_the_lines_in_units_of_their_steps_lr(tmp_path):
    """gen_pace_unit: the steps' clocks (the sums of their lrs and their count, and their window means) go into the
    checkpoint with the windows, taken during the fast start, where the level moves between windows: the resumed run
    is the uninterrupted one, bit for bit. A checkpoint without them is refused with what to pass."""

    run = functools.partial(train_averages, tmp_path, learning_rate=1e-5, max_steps=30, save_steps=10,
                            gen_pace_unit=True)  # fmt: skip

    full_trace, full_weights = run()
    path = tmp_path / "checkpoint-10" / "gen_pending_line-rank0.pt"
    saved = torch.load(path, weights_only=True)
    assert saved["pace"]["count"] == saved["count"] > 0 and saved["pace"]["previous"] is not None
    assert full_trace[0]["interval"] == 1 and full_trace[1]["lr"] != full_trace[0]["lr"]  # the fast start moved it
    resumed_trace, resumed_weights = run(resume=str(tmp_path / "checkpoint-10"))
    assert resumed_trace == full_trace
    for n in full_weights:
        torch.testing.assert_close(resumed_weights[n], full_weights[n], rtol=0, atol=0)
    del saved["pace"]
    torch.save(saved, path)
    with pytest.raises(ValueError, match="saved without .* resume it with gen_pace_unit=False, or start again"):
        run(resume=str(tmp_path / "checkpoint-10"))


@pytest.mark.parametrize(
    "key, option",
    [("open_line", "gen_fast_start_batches or gen_line_batches"), ("witness", "gen_fast_start_confirm"),
     ("window_now", "gen_grow_windows"), ("trend", "gen_raise_needs_progress")],
)  # fmt: skip
def test_a_checkpoint_holding_a_removed_options_state_is_refused_by_name(tmp_path, key, option):
    """Checkpoints written while a since-removed window-line option was on hold that option's state under these keys:
    resumed without it, the run would silently not be the one it continues, so the resume is refused, naming the
    option. The same keys holding None (as a default run once saved ``trend``) are what a run without it saved."""

    run = functools.partial(train_averages, tmp_path, learning_rate=1e-2, max_steps=12, save_steps=10, gen_window=4)
    run()
    path = tmp_path / "checkpoint-10" / "gen_pending_line-rank0.pt"
    saved = torch.load(path, weights_only=True)
    assert key not in saved
    torch.save({**saved, key: None}, path)
    run(resume=str(tmp_path / "checkpoint-10"))
    torch.save({**saved, key: {"count": 1}}, path)
    with pytest.raises(ValueError, match=f"state of {option}.*no longer has: resume it with the hf-gen version"):
        run(resume=str(tmp_path / "checkpoint-10"))


def test_resume_inside_a_warmup_gives_the_uninterrupted_run(tmp_path):
    """The Trainer's warmup_steps composed with GeN: a checkpoint saved inside the warmup resumes onto the same rise
    and the same lines, bit for bit, and the logged lrs before the first line are the rise's closed form."""

    run = functools.partial(train_averages, tmp_path, learning_rate=1e-3, max_steps=30, save_steps=5,
                            warmup_steps=10)  # fmt: skip

    full_trace, full_weights = run()
    first = full_trace[0]["step"]  # no line before the first two windows have closed
    assert first > 5
    resumed_trace, resumed_weights = run(resume=str(tmp_path / "checkpoint-5"))
    assert resumed_trace == full_trace
    for n in full_weights:
        torch.testing.assert_close(resumed_weights[n], full_weights[n], rtol=0, atol=0)
    state = json.loads((tmp_path / "checkpoint-5" / "trainer_state.json").read_text())
    logged = [r["learning_rate"] for r in state["log_history"] if "learning_rate" in r]
    assert logged == pytest.approx([1e-3 * (t + 1) / 11 for t in range(len(logged))])


# ---- the mean of the last steps' weights (gen_tail_average) --------------------------------------------------------


class WeightsAfterEachStep(TrainerCallback):
    """The trainable weights after every optimizer step (``on_step_end`` comes after the step), in float64."""

    def __init__(self, model):
        self.model, self.steps = model, []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append({n: p.detach().double().clone() for n, p in self.model.named_parameters()})


@pytest.mark.parametrize("probe_batch", ["same", "averages"])
def test_the_run_ends_on_the_mean_of_the_last_steps_weights(tmp_path, probe_batch):
    """gen_tail_average=0.25 of 12 steps: the model after train() is the mean of the weights after steps 10, 11 and
    12 (the oracle: those weights, recorded by a callback in the same run without the tail); the lr trace and every
    step before the last are the run's without it, and the last step already ends on the mean (what the Trainer
    evaluates and saves at that step)."""
    finals = {}
    for tail in (0.0, 0.25):
        model = MLP(dropout=0.2, seed=0)
        args = gen_args(tmp_path / str(tail), learning_rate=1e-2, max_steps=12, gen_probe_batch=probe_batch,
                        gen_window=3, gen_tail_average=tail)  # fmt: skip
        recorder = WeightsAfterEachStep(model)
        GeNTrainer(model=model, args=args, train_dataset=Regression(n=96), callbacks=[recorder]).train()
        finals[tail] = ({n: p.detach().double() for n, p in model.named_parameters()}, recorder.steps,
                        read_trace(tmp_path / str(tail)))  # fmt: skip
    last, steps, trace = finals[0.0]
    assert all(torch.equal(last[n], steps[-1][n]) for n in last)  # off: the last iterate
    mean, steps_tail, trace_tail = finals[0.25]
    assert trace_tail == trace and len(steps_tail) == 12
    for n in mean:
        oracle = sum(step[n] for step in steps[-3:]) / 3
        torch.testing.assert_close(mean[n], oracle, rtol=0, atol=1e-6)  # float32 sums of three steps
        assert all(torch.equal(a[n], b[n]) for a, b in zip(steps_tail[:-1], steps[:-1], strict=True))  # the same run
        assert torch.equal(steps_tail[-1][n], mean[n])  # at the last step's end the model is the mean
        assert not torch.equal(mean[n], steps[-1][n])


def test_the_last_evaluation_and_checkpoint_inside_train_see_the_mean(tmp_path):
    """The Trainer evaluates and saves at the last step inside train(): with the tail's mean (the default with no
    decay shape) both see the mean, so the last logged eval_loss is evaluate()'s after train(), and the last
    checkpoint holds the model train() returns. The oracle for "not the live weights": the same run ending on the
    last iterate, whose last logged eval_loss differs."""
    logged, returned = {}, {}
    for tail in (None, 0.0):  # None: the default, 0.2 of 10 steps with no shape
        out = tmp_path / str(tail)
        args = gen_args(out, learning_rate=1e-2, max_steps=10, gen_probe_batch="averages", gen_window=3,
                        gen_tail_average=tail, eval_strategy="steps", eval_steps=10, save_strategy="steps",
                        save_steps=10, per_device_eval_batch_size=16)  # fmt: skip
        assert args.gen_tail_average == (0.2 if tail is None else 0.0)
        model = MLP(dropout=0.2, seed=0)
        trainer = GeNTrainer(
            model=model, args=args, train_dataset=Regression(n=80), eval_dataset=Regression(n=32, seed=1)
        )
        trainer.train()
        logged[tail] = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
        returned[tail] = trainer.evaluate()["eval_loss"]
        saved = load_file(str(out / "checkpoint-10" / "model.safetensors"))
        for n, p in model.named_parameters():
            assert torch.equal(saved[n], p.detach())
    assert logged[None] == [returned[None]] and logged[0.0] == [returned[0.0]]
    assert returned[None] != returned[0.0]


def test_a_resume_inside_the_tail_ends_on_the_same_mean(tmp_path):
    """The tail's sum goes with the checkpoint: resumed at step 10 of 12 (one step into a tail of three), the run
    ends on the uninterrupted run's mean, bit for bit; without the saved sum it would not."""

    def run(resume=None):
        args = gen_args(tmp_path, learning_rate=1e-2, max_steps=12, save_strategy="steps", save_steps=10,
                        gen_tail_average=0.25)  # fmt: skip
        model = MLP(dropout=0.2, seed=0)
        GeNTrainer(model=model, args=args, train_dataset=Regression(n=96)).train(resume_from_checkpoint=resume)
        return {n: p.detach().clone() for n, p in model.named_parameters()}

    full = run()
    saved = torch.load(tmp_path / "checkpoint-10" / "gen_pending_line-rank0.pt", weights_only=True)
    assert set(saved) == {"tail"} and saved["tail"]["count"] == 1
    resumed = run(resume=str(tmp_path / "checkpoint-10"))
    for n in full:
        torch.testing.assert_close(resumed[n], full[n], rtol=0, atol=0)
    (tmp_path / "checkpoint-10" / "gen_pending_line-rank0.pt").unlink()
    lost = run(resume=str(tmp_path / "checkpoint-10"))
    assert any(not torch.equal(lost[n], full[n]) for n in full)


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
            devices.append({t.device.type for t in trainer._gen_step.snapshot.theta0})
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
