"""The diagnostics behind the precision guard and the fine-tune analysis: Adam's line against its closed form, the
rounding measurement on digits, and the head/body split of a classification fine-tune."""

import line_by_group
import precision_noise
import pytest
import torch
from _tasks import adam_line, build_task


def test_adam_line_is_adams_first_step_and_moves_only_the_named_parameters():
    task = build_task("digits", 300)
    line = adam_line(task, seed=0, warm=0, warm_lr=1e-3)
    model = task.model(0)  # the same initial weights: the gradient on the same batch, independently
    model.eval()
    model(**line.batches[0]).loss.backward()
    for name, p in model.named_parameters():
        g = p.grad
        # Adam's first update per unit lr, bias-corrected: m / (sqrt(v) + eps) = g / (|g| + eps)
        torch.testing.assert_close(line.direction[name], g / (g.abs() + 1e-8), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(line.params[name].detach(), p.detach())  # left at the start of the line
    first = next(iter(line.params))
    line.move_to(0.5, {first})
    for name, p in line.params.items():
        expected = line.before[name] - 0.5 * line.direction[name] if name == first else line.before[name]
        assert torch.equal(p.detach(), expected)


def test_bf16_rounding_on_digits_is_inside_the_guards_bound():
    # The documented measurement (warm 20, lr 1e-3): the bf16 change is off the float32 one by under a quarter of
    # u |L| / sqrt(N), N = 32 examples.
    result = precision_noise.measure(build_task("digits", 300), seed=0, warm=20, warm_lr=1e-3)
    assert result["terms"] == 32 and result["bound"] == pytest.approx(2.0**-8 * result["loss"] / 32**0.5)
    assert max(abs(p["error"]) for p in result["points"]) < 0.25 * result["bound"]
    assert abs(result["points"][-1]["change"]) > 10 * result["bound"]  # a = 1e-2 is far above it


@pytest.mark.slow
def test_line_by_group_splits_the_new_head_from_the_pretrained_body(monkeypatch):
    monkeypatch.setattr(line_by_group, "GRID", [1e-4, 1e-2])
    rows = line_by_group.line_minima(build_task("minilm", 40, eval_rows=16), seed=0, warm=0, warm_lr=3e-4)
    assert [r["group"] for r in rows] == ["all", "head", "body"]
    assert rows[0]["head"] == ["classifier.bias", "classifier.weight"]  # what the checkpoint did not have
    for r in rows:  # the same start on each batch, and a grid point (or 0) as the argmin
        assert r["same"]["loss0"] == rows[0]["same"]["loss0"] and r["held"]["argmin"] in (0.0, 1e-4, 1e-2)
