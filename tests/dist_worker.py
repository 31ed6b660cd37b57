"""One process of a multi-process GeN run (launched by tests/test_distributed.py through torchrun).

Usage: python -m torch.distributed.run --nproc_per_node=2 tests/dist_worker.py OUT_JSON ENGINE GEN_MODE GLOBAL_BATCH
ENGINE is "ddp" or "single" (one process, the reference). (FSDP cannot run through the Trainer on CPU: see
fsdp_line_worker.py.) Writes OUT_JSON.<rank> with the lr applied at every
step, the number of probe forwards, and the final (full) weights.
"""

import json
import os
import sys

import torch
from transformers import TrainerCallback

from hf_gen import GeNTrainer, GeNTrainingArguments
from hf_gen.trace import read_trace

from tiny import MLP, Quadratic, Regression, Shifted


class AppliedLr(TrainerCallback):
    def __init__(self):
        self.lrs = []

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        self.lrs.append(optimizer.param_groups[0]["lr"])


def main(out, engine, gen_mode, global_batch):
    world = int(os.environ.get("WORLD_SIZE", "1"))
    # "approx-averages-jitter": no fast start, windows of 4 steps, each line charged with the jitter cost;
    # "approx-averages-undo": plain SGD on rows read in order whose targets jump over steps 16 to 20, windows of 5
    # steps from the start, and the window of those steps taken back (gen_undo_lost_windows)
    extra, data, quadratic = {}, Regression(n=64, dtype=torch.float64), False
    for suffix, option in (
        (
            "-jitter",
            {
                "gen_window": 4,
                "gen_fast_start": False,
                "learning_rate": 1e-2,
                "max_steps": 30,
                "gen_jitter_cost": True,
            },
        ),
        (
            "-undo",
            {
                "gen_window": 5,
                "gen_fast_start": False,
                "learning_rate": 0.2,
                "max_steps": 30,
                "optim": "sgd",
                "weight_decay": 0.0,
                "train_sampling_strategy": "sequential",
                "gen_undo_lost_windows": True,
            },
        ),
    ):
        if gen_mode.endswith(suffix):
            gen_mode = gen_mode.removesuffix(suffix)
            extra = {"gen_interval": 2, "learning_rate": 1e-4, "max_steps": 16, **option}
            if suffix == "-undo":
                data = Shifted(n=160, start=60, stop=80, shift=6.0, dtype=torch.float64)
    args = GeNTrainingArguments(
        output_dir=os.path.dirname(out) + f"/run-{engine}",
        lr_scheduler_type="gen",
        gen_mode=gen_mode.split("-")[0],
        gen_probe_batch=gen_mode.split("-")[1] if "-" in gen_mode else None,
        # with gen_interval=1: every window one step
        **{
            "gen_window": 1 if gen_mode.endswith("averages") else None,
            "gen_interval": 1,
            "learning_rate": 1e-2,
            "max_steps": 6,
            **extra,
        },  # fmt: skip
        per_device_train_batch_size=global_batch // world,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        logging_steps=1,
        seed=0,
        ddp_backend="gloo" if world > 1 else None,
    )
    model = Quadratic() if quadratic else MLP(n_in=4, hidden=16, seed=0, dtype=torch.float64)
    probes = {"count": 0}
    model.register_forward_hook(lambda m, i, o: probes.__setitem__("count", probes["count"] + 1))
    recorder = AppliedLr()
    trainer = GeNTrainer(model=model, args=args, train_dataset=data, callbacks=[recorder])
    trainer.train()
    weights = {}
    for name, p in trainer.model.named_parameters():
        full = p.full_tensor() if hasattr(p, "full_tensor") else p
        weights[name] = full.detach().reshape(-1).tolist()
    rank = int(os.environ.get("RANK", "0"))
    if torch.distributed.is_initialized():
        torch.distributed.barrier()  # the main process writes the trace: every rank reads it once it is complete
    trace = read_trace(args.output_dir)
    # One forward per probe point, but not the next-batch point at the step's own weights (the training forward)
    # The probe forwards behind each record: a one-step line's known point came from the training forward, and the
    # averages scheme's fast start also measures the last step's line beside the window's.
    probe_points = [
        len(r.get("probe_losses", []))
        - (r.get("probe_batch") == "next")
        + max(len(r.get("one_step_probe_losses", [])) - 1, 0)
        for r in trace
    ]
    with open(f"{out}.{rank}", "w") as handle:
        json.dump(
            {"lrs": recorder.lrs, "forwards": probes["count"], "probe_points": probe_points, "weights": weights,
             "world": world, "jitter_costs": [r.get("jitter_cost") for r in trace],
             "lost": [(r["step"], r["window_losses"], r["window_loss_se"]) for r in trace
                      if r["fallback"] == "lost_window"]},
            handle,
        )  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
    # Leave the process group cleanly: exiting with it alive can abort in gloo's threads ("terminate called ...").
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    # The results are on disk. Skip the interpreter's teardown, where gloo's threads still abort now and then
    # (about 1 run in 15 here, always after both ranks wrote their complete results).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
