"""The line machinery on its own: dot products, snapshot arithmetic, random-state replay."""

import pytest
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
    snapshot = LineSnapshot([p], 1.0)
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


def test_moves_without_a_second_copy_land_on_the_line_and_finish_at_the_chosen_point():
    # The fast start's search visits several points from the live weights alone, rescaling about theta0.
    g = torch.Generator().manual_seed(3)
    p = torch.nn.Parameter(torch.randn(50, generator=g, dtype=torch.float64))
    snapshot = LineSnapshot([p], 1.0)
    theta0 = p.detach().clone()
    step = torch.randn(50, generator=g, dtype=torch.float64)
    with torch.no_grad():
        p.sub_(step)  # theta1 = theta0 - step
    for fraction in (8.0, 0.125, 0.01, 1.7):
        snapshot.move_to(fraction)
        torch.testing.assert_close(p.detach(), theta0 - fraction * step, rtol=1e-12, atol=1e-12)
        assert snapshot.theta1 is None  # no second copy was taken
    snapshot.finish(0.6)
    torch.testing.assert_close(p.detach(), theta0 - 0.6 * step, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="a > 0"):
        LineSnapshot([p], 1.0).move_to(0.0)  # theta0 is not reachable by rescaling without a copy of theta1


def _line_walk(fused: bool) -> list[torch.Tensor]:
    """Every parameter value along three walks on the line (rescaling, two copies, exact mode's return to the start),
    with the fused ``_foreach`` path on or off."""
    seen = []
    for walk in ("rescale", "two copies", "exact"):
        g = torch.Generator().manual_seed(5)
        dtypes = (torch.float32, torch.bfloat16, torch.float64, torch.float32, torch.float32)
        shapes = ((30, 7), (7,), (1,), (5, 3, 2), (40,))
        params = [torch.nn.Parameter(torch.randn(s, generator=g).to(d)) for s, d in zip(shapes, dtypes, strict=True)]
        steps = [torch.randn(s, generator=g).to(d) for s, d in zip(shapes, dtypes, strict=True)]
        snapshot = LineSnapshot(params, 0.5)
        assert snapshot._fused  # on with _FUSE_ON_CPU
        snapshot._fused = fused
        with torch.no_grad():
            for p, step in zip(params, steps, strict=True):
                p.sub_(step)  # the optimizer's step
        if walk == "rescale":
            snapshot.move_to(2.0)
            seen += [p.detach().clone() for p in params]
            with snapshot.at_start():
                seen += [p.detach().clone() for p in params]
            seen += [p.detach().clone() for p in params]
            snapshot.move_to(0.125)
        elif walk == "two copies":
            snapshot.keep_theta1()
            snapshot.move_to(-0.5)
        else:
            seen += [s.clone() for s in snapshot.return_to_start()]
        seen += [p.detach().clone() for p in params]
        snapshot.finish(0.3)
        seen += [p.detach().clone() for p in params]
    return seen


def test_fused_and_one_tensor_at_a_time_moves_give_the_same_bits(monkeypatch):
    # Plain tensors go through torch's fused _foreach kernels in runs of one dtype (the swap's runs capped in size);
    # sharded or offloaded copies go one tensor at a time. Both must do the same arithmetic element by element.
    monkeypatch.setattr("hf_gen.line._SWAP_LIMIT", 64)  # several swap runs, one larger than the limit
    monkeypatch.setattr("hf_gen.line._FUSE_ON_CPU", True)  # the fused path runs on accelerators only
    fused, single = _line_walk(True), _line_walk(False)
    assert len(fused) == len(single) == 5 * 10  # 10 snapshots of 5 tensors
    assert all(torch.equal(a, b) and a.dtype == b.dtype for a, b in zip(fused, single, strict=True))


def test_directional_dot_over_many_small_tensors_of_mixed_dtypes(monkeypatch):
    monkeypatch.setattr("hf_gen.line._CHUNK", 100)  # small tensors in several fused runs, a larger one in chunks
    monkeypatch.setattr("hf_gen.line._FUSE_ON_CPU", True)
    g = torch.Generator().manual_seed(2)
    shapes = [(7, 3), (40,), (5, 5), (300,), (2,), (60,), (9, 9)]
    dtypes = [torch.float32, torch.float64, torch.float32, torch.float32, torch.float64, torch.float32, torch.float32]
    v, a, b = ([torch.randn(s, generator=g, dtype=d) for s, d in zip(shapes, dtypes, strict=True)] for _ in range(3))
    v[4] = None  # a parameter without a gradient takes no part
    expected = sum(float((x.double() - y.double()).mul(w.double()).sum())
                   for w, x, y in zip(v, a, b, strict=True) if w is not None)  # fmt: skip
    got = directional_dot(v, a, b)
    assert got.dtype == torch.float64 and abs(float(got) - expected) <= 1e-6 * abs(expected)


def test_window_means_of_bfloat16_parameters_are_kept_in_float32():
    # A hundred bfloat16 steps of 1e-3 on weights near 1: a bfloat16 sum (8 bits of mantissa) would round each step
    # away; the float32 sum gives the mean of the values the parameter took.
    from hf_gen.line import WindowMeans

    p = torch.nn.Parameter(torch.ones(5, dtype=torch.bfloat16))
    means, values = WindowMeans(), []
    for k in range(100):
        with torch.no_grad():
            p.copy_(torch.full((5,), 1.0 + 1e-3 * k, dtype=torch.float32))
        values.append(p.detach().float().clone())
        means.add([p])
    assert means.total[0].dtype == torch.float32 and means.count == 100
    mean = means.close()[0]
    torch.testing.assert_close(mean, torch.stack(values).mean(0), rtol=1e-6, atol=0)
    assert means.total is None and means.count == 0
    # Moving along the line between two means: start + c (end - start), stored in the parameter's dtype.
    WindowMeans.move([p], [torch.zeros(5)], [mean], 2.0)
    torch.testing.assert_close(p.detach(), (2.0 * mean).to(torch.bfloat16), rtol=0, atol=0)
