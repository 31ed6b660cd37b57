"""The probes see what training saw: the whole effective batch, the same dropout masks, untouched buffers."""

import math

import pytest
import torch
from torch import nn
from transformers import Trainer, TrainingArguments

from hf_gen import GeNTrainer

from tiny import MLP, Regression, Tokens, gen_args, read_trace, tiny_gpt2

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
