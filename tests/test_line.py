"""The line machinery on its own: dot products, snapshot arithmetic, random-state replay."""

import torch

from hf_gen.line import LineSnapshot, RngState, directional_dot


def test_directional_dot_in_chunks_equals_float64_reference():
    g = torch.Generator().manual_seed(0)
    shapes = [(1500, 1100), (7,), (3, 5)]  # the first is taken in chunks
    v, a, b = ([torch.randn(s, generator=g) for s in shapes] for _ in range(3))
    expected = sum(float((x.double() - y.double()).mul(w.double()).sum()) for w, x, y in zip(v, a, b, strict=True))
    got = directional_dot(v, a, b)
    assert got.dtype == torch.float64
    assert abs(float(got) - expected) <= 1e-6 * abs(expected) + 1e-6
    assert directional_dot([None], [torch.ones(2)], [torch.zeros(2)]) is None


def test_snapshot_moves_along_the_line_and_finishes_at_the_chosen_point():
    p = torch.nn.Parameter(torch.tensor([1.0, 2.0, -3.0]))
    snapshot = LineSnapshot([p])
    theta0 = p.detach().clone()
    with torch.no_grad():
        p.sub_(torch.tensor([0.5, -1.0, 0.25]))  # the optimizer's step: theta1
    theta1 = p.detach().clone()
    snapshot.keep_theta1()
    snapshot.move_to(-1.0)
    torch.testing.assert_close(p.detach(), 2 * theta0 - theta1)
    snapshot.finish(0.3)
    torch.testing.assert_close(p.detach(), theta0 + 0.3 * (theta1 - theta0))
    assert snapshot.theta0 == [] and snapshot.theta1 is None


def test_rng_replay_repeats_the_draw_and_leaves_the_stream_alone():
    torch.manual_seed(1)
    state = RngState(torch.device("cpu"))
    first = torch.rand(4)
    following = torch.rand(4)
    torch.manual_seed(1)
    torch.rand(4)
    with state.replay():
        again = torch.rand(4)
    assert torch.equal(again, first)
    assert torch.equal(torch.rand(4), following)
