"""FSDP2 shards under GeN's line machinery (launched by tests/test_distributed.py through torchrun on CPU/gloo).

accelerate enables its FSDP plugin only on accelerators (on CPU the Trainer falls back to DDP), so this worker shards
a model with torch's own `fully_shard` and runs the exact steps GeNTrainer runs on a recompute step: snapshot, one
optimizer step, slope, a probe point, final weights; and the default scheme's ("averages"): two windows' mean
weights summed over optimizer steps, the losses on the line through them, the gradients' slope along it, and the
means saved and restored as a checkpoint does. Each rank compares against an unsharded replica.
Usage: python -m torch.distributed.run --nproc_per_node=2 tests/fsdp_line_worker.py OUT_JSON
"""

import copy
import json
import os
import sys

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard

from hf_gen.line import LineSnapshot, WindowMeans, directional_dot, laid_out_like, local_copies, reshard

from tiny import MLP, Regression


def main(out):
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    data = Regression(n=16, dtype=torch.float64)
    model = MLP(n_in=4, hidden=6, seed=0, dtype=torch.float64)
    replica = copy.deepcopy(model)
    fully_shard(model)
    lr0, offset, fraction = 0.05, -1.0, 0.6

    def step_and_measure(net, sharded, keep=True, offset=offset):
        opt = torch.optim.AdamW(net.parameters(), lr=lr0, weight_decay=0.1)
        net(data.x, data.y)["loss"].backward()  # same full batch on every rank: FSDP's averaged grad equals it
        params = list(net.parameters())
        snapshot = LineSnapshot(params, 1.0)
        grads = [p.grad for p in params]
        opt.step()
        slope = snapshot.slope_numerator(grads) / lr0
        if keep:
            snapshot.keep_theta1()
        else:  # the line search's way: rescale the live shards about theta0, no second copy
            snapshot.move_to(2.5 * offset)
        snapshot.move_to(offset)
        with torch.no_grad():
            probe = net(data.x, data.y)["loss"]
        reshard(net)
        snapshot.finish(fraction)
        weights = torch.cat([(p.full_tensor() if sharded else p).detach().reshape(-1) for p in net.parameters()])
        return float(slope), float(probe), weights, all(type(p).__name__ == "DTensor" for p in params)

    def windows_and_line(net, sharded, steps=3):
        """Two windows of ``steps`` AdamW steps; the losses on the line through their means at c = 0, 1, 2 (the live
        weights put back after, as ``Averages._probe`` does), the next gradient's slope along it
        (``directional_dot``), and the means after a save and restore (``WindowMeans.local_state``)."""
        opt = torch.optim.AdamW(net.parameters(), lr=lr0, weight_decay=0.1)
        params = list(net.parameters())
        means, closed = WindowMeans(), []
        for _ in range(2):
            for _ in range(steps):
                opt.zero_grad()
                net(data.x, data.y)["loss"].backward()
                opt.step()
                means.add(params)
            closed.append(means.close())
        previous, means.previous = closed
        with torch.no_grad():
            live = [p.detach().clone() for p in params]
        losses = []
        for c in (0.0, 1.0, 2.0):
            WindowMeans.move(params, previous, means.previous, c)
            with torch.no_grad():
                losses.append(float(net(data.x, data.y)["loss"]))
            reshard(net)
        with torch.no_grad():
            for p, x in zip(params, live, strict=True):
                p.copy_(x)
        opt.zero_grad()
        net(data.x, data.y)["loss"].backward()
        witness = float(directional_dot([p.grad for p in params], means.previous, previous))
        restored = WindowMeans()
        restored.load_local_state(params, {"count": 0, "previous": local_copies(means.previous)})

        def flat(tensors):
            return torch.cat([(t.full_tensor() if sharded else t).detach().reshape(-1) for t in tensors])

        kept = bool(torch.equal(flat(restored.previous), flat(means.previous)))
        back = laid_out_like(params[0], local_copies(params[:1])[0], None, params[0].dtype)
        kept = kept and bool(torch.equal(flat([back]), flat(params[:1])))
        return losses, witness, flat(params), flat(means.previous), kept

    window_losses, witness, window_weights, window_mean, kept = windows_and_line(model, True)
    ref_losses, ref_witness, ref_window_weights, ref_window_mean, _ = windows_and_line(replica, False)
    slope, probe, weights, sharded = step_and_measure(model, True)
    ref_slope, ref_probe, ref_weights, _ = step_and_measure(replica, False)
    _, probe2, weights2, _ = step_and_measure(model, True, keep=False, offset=0.4)
    _, ref_probe2, ref_weights2, _ = step_and_measure(replica, False, keep=False, offset=0.4)
    local = sum(p.to_local().numel() for p in model.parameters())
    total = sum(p.numel() for p in replica.parameters())
    check = directional_dot([torch.ones(3)], [torch.full((3,), 2.0)], [torch.ones(3)])
    with open(f"{out}.{rank}", "w") as handle:
        json.dump(
            {
                "sharded": sharded,
                "local_numel": local,
                "total_numel": total,
                "slope": slope,
                "ref_slope": ref_slope,
                "probe": probe,
                "ref_probe": ref_probe,
                "max_weight_diff": float((weights - ref_weights).abs().max()),
                "probe2": probe2,
                "ref_probe2": ref_probe2,
                "max_weight_diff2": float((weights2 - ref_weights2).abs().max()),
                "plain_dot": float(check),
                "window_losses": window_losses,
                "ref_window_losses": ref_losses,
                "witness": witness,
                "ref_witness": ref_witness,
                "max_window_weight_diff": float((window_weights - ref_window_weights).abs().max()),
                "max_window_mean_diff": float((window_mean - ref_window_mean).abs().max()),
                "means_restored": kept,
            },
            handle,
        )
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
    # Results are on disk and the process group is destroyed; skip the interpreter's teardown, where gloo's threads
    # abort now and then (see dist_worker.py).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
