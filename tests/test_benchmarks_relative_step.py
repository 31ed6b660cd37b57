"""benchmarks/relative_step.py: the relative size of each optimizer step, against the steps replayed in closed form."""

import math

import pytest
import relative_step
import torch
from transformers import Trainer, TrainingArguments

from tiny import Dummy, Quadratic


def test_relative_change_of_known_tensors():
    before = [torch.tensor([3.0, 4.0]), torch.zeros(2)]
    after = [torch.tensor([3.0, 5.0]), torch.tensor([0.0, 2.0])]
    whole, per = relative_step.relative_change(before, after)
    assert whole == pytest.approx(math.sqrt(1.0 + 4.0) / 5.0)  # ||(0, 1, 0, 2)|| / ||(3, 4, 0, 0)||
    assert per[0] == pytest.approx(1.0 / 5.0)
    assert per[1] is None  # a tensor that started at zero has no relative change


def test_tensors_that_start_at_zero_are_counted():
    model = torch.nn.Linear(3, 2)
    torch.nn.init.zeros_(model.bias)  # like LoRA's B
    assert relative_step.StepSize(model).zero_tensors == 1


def test_steps_of_a_real_trainer_match_gradient_descent_replayed(tmp_path):
    """Plain SGD on an exact quadratic: theta <- theta - lr (A theta - b), so every step's size is known."""
    lr, steps = 0.1, 5
    model = Quadratic(seed=1)
    oracle = model.theta().detach().clone()
    start = oracle.clone()
    args = TrainingArguments(
        output_dir=str(tmp_path), report_to="none", use_cpu=True, save_strategy="no", max_steps=steps,
        per_device_train_batch_size=2, learning_rate=lr, lr_scheduler_type="constant", max_grad_norm=1e9,
        weight_decay=0.0,
    )  # fmt: skip
    trainer = Trainer(
        model=model, args=args, train_dataset=Dummy(16), optimizers=(torch.optim.SGD(model.parameters(), lr=lr), None)
    )
    sizes = relative_step.StepSize(model)
    trainer.add_callback(sizes)
    trainer.train()
    expected = []
    for _ in range(steps):
        new = oracle - lr * (model.A @ oracle - model.b)
        expected.append(float(torch.linalg.vector_norm(new - oracle) / torch.linalg.vector_norm(oracle)))
        oracle = new
    assert sizes.whole == pytest.approx(expected, rel=1e-9)
    drift = float(torch.linalg.vector_norm(oracle - start) / torch.linalg.vector_norm(start))
    assert sizes.drift() == pytest.approx(drift, rel=1e-9)
    assert len(sizes.per_tensor) == steps and all(r > 0.0 for r in sizes.per_tensor)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("adamw-linear@0.03", "TASK=FAMILY@LR"),
        ("digit=adamw-linear@0.03", "unknown task 'digit'"),
        ("digits=adamw-lin@0.03", "unknown family 'adamw-lin'"),
        ("digits=adamw-linear@fast", "the lr 'fast' is not a number"),
    ],
)
def test_bad_run_spec_says_what_to_pass(text, says):
    with pytest.raises(SystemExit, match=says):
        relative_step.parse_run(text)


def test_run_spec_reads_task_family_and_lr():
    assert relative_step.parse_run("minilm=adamw-linear@3e-4") == (
        "minilm",
        relative_step.Contender("adamw-linear", 3e-4),
    )
    task, contender = relative_step.parse_run("plays=gen-adamw")
    assert (task, contender.family, contender.lr) == ("plays", "gen-adamw", 5e-5)  # the Trainer's default lr
