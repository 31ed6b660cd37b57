"""Mixed precision: bf16 autocast on CPU for real; fp16 loss scaling with a real GradScaler."""

import pytest
import torch
from transformers import TrainerCallback

from hf_gen import GeNTrainer, GeNTrainingArguments
from hf_gen.schemes import StepRecord

from tiny import MLP, Regression, Tokens, read_trace, tiny_gpt2


def gen_args(out, **kwargs):
    base = dict(output_dir=str(out), lr_scheduler_type="gen", use_cpu=True, report_to="none", save_strategy="no",
                seed=0, per_device_train_batch_size=8, gen_decay="none",
                gen_probe_batch="same")  # fmt: skip  # the step's own line: the estimate of step 1 is compared
    base.update(kwargs)
    return GeNTrainingArguments(**base)


@pytest.mark.parametrize("seed", [0, 1])
def test_bf16_probes_run_under_autocast_and_estimate_stays_within_one_percent_of_fp32(tmp_path, seed):
    traces, dtypes = {}, []
    for bf16 in (False, True):
        model = tiny_gpt2(seed=seed)
        model.lm_head.register_forward_hook(
            lambda m, i, o, record=bf16: dtypes.append((o.dtype, torch.is_grad_enabled())) if record else None
        )
        args = gen_args(tmp_path / str(bf16), bf16=bf16, learning_rate=1e-2, max_steps=1)
        GeNTrainer(model=model, args=args, train_dataset=Tokens(seed=seed)).train()
        traces[bf16] = read_trace(tmp_path / str(bf16))[0]
    # One training forward (with grad) and one probe forward (no grad), both in bfloat16 under the same autocast.
    assert dtypes == [(torch.bfloat16, True), (torch.bfloat16, False)]
    # The fit itself runs on the host in float64 on the float32 losses: measured within 0.1% of fp32 (seeds 0-3).
    fp32, bf16 = traces[False], traces[True]
    assert bf16["alpha_star"] == pytest.approx(fp32["alpha_star"], rel=1e-2)
    assert bf16["curvature"] == pytest.approx(fp32["curvature"], rel=1e-2)


def test_a_step_too_short_for_bf16_is_not_fitted_and_the_fast_start_climbs_out_of_it(tmp_path):
    # In bfloat16 a loss of N terms is resolved to about 2**-8 / sqrt(N) of itself: a first step at lr 1e-7 moves it by
    # far less, so the probe holds rounding. Out of sample (the default), each such line is refused and the fast start
    # doubles the lr; in float32 (unit roundoff 2**-24) the same start is fitted from the first line.
    runs = {}
    for bf16 in (False, True):
        args = gen_args(tmp_path / str(bf16), bf16=bf16, learning_rate=1e-7, max_steps=6, gen_probe_batch="next",
                        gen_search_probes=0)  # fmt: skip
        trainer = GeNTrainer(model=tiny_gpt2(seed=0), args=args, train_dataset=Tokens(seed=0))
        trainer.train()
        one, hundred = (StepRecord(measures=True, num_items=torch.tensor(n)) for n in (1, 100))
        runs[bf16] = (trainer._gen_precision(one), trainer._gen_precision(hundred), read_trace(tmp_path / str(bf16)))
    (fp32_unit, fp32_100, fp32), (bf16_unit, bf16_100, bf16) = runs[False], runs[True]
    # u of the precision the loss is computed in, over sqrt(N) for a loss that averages N terms, but no finer than the
    # float32 number the loss is
    assert (fp32_unit, bf16_unit, fp32_100, bf16_100) == (2.0**-24, 2.0**-8, 2.0**-24, 2.0**-8 / 10)
    assert [r["fallback"] for r in bf16] == ["below_precision"] * 5
    assert [r["lr"] for r in bf16] == pytest.approx([1e-7 * 2**k for k in range(1, 6)])  # up by max_change each
    for record in bf16:  # the rule's premise, read off the trace: the step moved the loss by less than u * |loss| (at
        # least; the rule divides by sqrt(N) too)
        (_, at_start), (a0, at_end) = record["probe_losses"]
        assert abs(at_end - at_start) <= bf16_unit * abs(at_end) and abs(record["slope"]) * a0 <= bf16_unit * abs(
            at_end
        )
    assert fp32[0]["fallback"] is None and len(fp32) < len(bf16)  # fitted on the first line, and settled


class Recorder(TrainerCallback):
    """Per step: the loss scale after the step, the lr in effect, the weights."""

    def __init__(self, trainer, model):
        self.trainer, self.model = trainer, model
        self.scales, self.lrs, self.weights = [], [], []

    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        self.scales.append(self.trainer.accelerator.scaler.get_scale())
        self.lrs.append(optimizer.param_groups[0]["lr"])
        self.weights.append([p.detach().clone() for p in self.model.parameters()])


@pytest.mark.parametrize("optim", ["adamw_torch_fused", "adamw_torch", "sgd"])
def test_fp16_overflow_skipped_steps_make_no_gen_update(tmp_path, optim):
    # accelerate builds a GradScaler for fp16 only on accelerators. Here the CPU takes the same path: fp16 autocast
    # and a real torch.amp.GradScaler("cpu"), installed on the accelerator before training. A huge initial scale
    # overflows the first backward passes; the scaler backs off (halves the scale) and the update is skipped. Fused
    # optimizers (the Trainer's default) are still called on overflow and skip internally; the others are not.
    init = 2.0**22
    args = gen_args(tmp_path, fp16=True, learning_rate=1e-2, max_steps=10, gen_interval=1, optim=optim)
    model = MLP(seed=0)
    trainer = GeNTrainer(model=model, args=args, train_dataset=Regression())
    recorder = Recorder(trainer, model)
    trainer.add_callback(recorder)
    trainer.accelerator.native_amp = True
    trainer.accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=init, growth_interval=1000)
    trainer.train()
    scales = [init] + recorder.scales
    skipped = [after < before for before, after in zip(scales, scales[1:], strict=False)]
    assert any(skipped) and not all(skipped), skipped
    assert [r["step"] for r in read_trace(tmp_path)] == [i + 1 for i, s in enumerate(skipped) if not s]
    assert trainer.lr_scheduler.num_updates == skipped.count(False)
    first_real = skipped.index(False)
    assert recorder.lrs[:first_real] == [1e-2] * first_real  # skipped steps leave the lr alone
    start = [p.detach().clone() for p in MLP(seed=0).parameters()]
    for weights in recorder.weights[:first_real]:  # and the weights
        assert all(torch.equal(a, b) for a, b in zip(weights, start, strict=True))
    assert not any((r["fallback"] or "").startswith("nonfinite") for r in read_trace(tmp_path))
    assert all(torch.isfinite(p).all() for p in model.parameters())
