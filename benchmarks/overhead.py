"""What GeN costs per optimizer step, next to the least it could cost.

Usage:
    python benchmarks/overhead.py [--repeats 5] [--steps 16] [--n_embd 256] [--n_layer 6] [--seq 128] [--batch 8]
    python benchmarks/overhead.py --quick      # a smoke run (tiny model, 1 repeat)

A GPT-2-style model (about 10M parameters at the defaults) is trained by the real Trainer under each setting, in one
process, the settings interleaved over the repeats: plain Trainer at a constant lr; GeN approx at gen_interval 1, 4
and 8; GeN exact at 4; the authors' `gen-optim` (PyPI) at its interval 4, driven by a Trainer subclass that calls its
`lr_parabola` between backward and the optimizer step as its README does (three forwards on a fresh batch and an
extra optimizer step per recompute). The time per step is the mean over a window of steps that is a multiple of
every interval, after warm-up steps; the table shows the median over repeats.

The limit: approximate GeN needs at least one extra no-grad forward per recompute (the slope comes from the backward
pass, the loss at the current point from the training forward). A no-grad forward on the same batch is timed, and
each setting's overhead is printed next to that limit (overhead / limit). Exact GeN is compared with one forward
plus one Hessian-vector product (forward, backward with graph, second backward) timed on its own.
Writes the table to stdout and the raw numbers to --json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback  # noqa: E402
from transformers.tokenization_utils_base import BatchEncoding  # noqa: E402

from hf_gen import GeNTrainer, GeNTrainingArguments  # noqa: E402

LR = 3e-4


class Rows(torch.utils.data.Dataset):
    def __init__(self, n, seq, vocab):
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, vocab, (n, seq), generator=g)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


class StepClock(TrainerCallback):
    def __init__(self):
        self.stamps = []

    def on_step_end(self, args, state, control, **kwargs):
        self.stamps.append(time.perf_counter())


class AuthorsGeNTrainer(Trainer):
    """Drives the authors' `gen-optim` as its README does: `lr_parabola(...)` after backward, before `step()`."""

    lazy_freq = 4

    def __init__(self, *args, fresh_batches=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._fresh = fresh_batches

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.accelerator.sync_gradients and (self.state.global_step + 1) % self.lazy_freq == 0:
            from GeN import lr_parabola

            inner = self.optimizer.optimizer if hasattr(self.optimizer, "optimizer") else self.optimizer
            lr_parabola(self.model, inner, tr_iter=self._fresh, task="NLU", device=self.args.device.type)
        return loss


def fresh_batches(dataset, batch):
    """An endless iterator of batches for gen-optim's probes (`NLU` task: a `BatchEncoding`)."""
    i = 0
    while True:
        rows = [dataset[(i + k) % len(dataset)] for k in range(batch)]
        i += batch
        yield BatchEncoding({key: torch.stack([r[key] for r in rows]) for key in rows[0]})


def make_model(opts):
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=opts.vocab, n_positions=opts.seq, n_embd=opts.n_embd, n_layer=opts.n_layer,
                        n_head=max(1, opts.n_embd // 64), attn_implementation="eager")  # fmt: skip
    return GPT2LMHeadModel(config)


SETTINGS = {
    "plain Trainer, constant lr": {"lr_scheduler_type": "constant"},
    "GeN approx, interval 1": {"lr_scheduler_type": "gen", "gen_interval": 1},
    "GeN approx, interval 4 (default)": {"lr_scheduler_type": "gen", "gen_interval": 4},
    "GeN approx, interval 8": {"lr_scheduler_type": "gen", "gen_interval": 8},
    "GeN exact, interval 4": {"lr_scheduler_type": "gen", "gen_interval": 4, "gen_mode": "exact"},
    "gen-optim (authors), interval 4": {"lr_scheduler_type": "constant", "authors": True},
}


def run_setting(name, spec, opts, data):
    spec = dict(spec)
    authors = spec.pop("authors", False)
    total = opts.warmup + opts.steps
    # gen_fast_start off: the timing is of the steady state (interval as set), not of the start phase.
    args = GeNTrainingArguments(output_dir=os.path.join(opts.out, "".join(c if c.isalnum() else "_" for c in name)),
                                max_steps=total, per_device_train_batch_size=opts.batch, learning_rate=LR,
                                report_to="none", save_strategy="no", disable_tqdm=True, logging_steps=10_000,
                                use_cpu=not torch.cuda.is_available(), gen_fast_start=False, max_grad_norm=1.0,
                                dataloader_drop_last=True, seed=0, **spec)  # fmt: skip
    clock = StepClock()
    model = make_model(opts)
    if authors:
        trainer = AuthorsGeNTrainer(model=model, args=args, train_dataset=data, callbacks=[clock],
                                    fresh_batches=fresh_batches(data, opts.batch))  # fmt: skip
    else:
        trainer = GeNTrainer(model=model, args=args, train_dataset=data, callbacks=[clock])
    trainer.train()
    stamps = clock.stamps[opts.warmup - 1 :]
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1)


def time_forward_and_hvp(opts, data, repeats):
    """Times of a no-grad forward, and of forward + Hessian-vector product, on one training batch."""
    model = make_model(opts)
    model.train()
    batch = {key: torch.stack([data[i][key] for i in range(opts.batch)]) for key in ("input_ids", "labels")}
    params = [p for p in model.parameters() if p.requires_grad]
    direction = [torch.randn_like(p) for p in params]

    def forward():
        with torch.no_grad():
            model(**batch).loss.item()

    def hvp():
        loss = model(**batch).loss
        grads = torch.autograd.grad(loss, params, create_graph=True)
        dot = sum((g * d).sum() for g, d in zip(grads, direction, strict=True))
        hv = torch.autograd.grad(dot, params)
        sum((h * d).sum() for h, d in zip(hv, direction, strict=True)).item()

    out = {}
    for name, fn in (("forward", forward), ("hvp", hvp)):
        fn()
        out[name] = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            out[name].append(time.perf_counter() - start)
    return out


def main():
    parser = argparse.ArgumentParser(description="GeN's cost per optimizer step, next to its limit.")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=16, help="timed steps per run (a multiple of 8)")
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--n_embd", type=int, default=256)
    parser.add_argument("--n_layer", type=int, default=6)
    parser.add_argument("--vocab", type=int, default=16384)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny model, one repeat, 8 steps")
    parser.add_argument("--out", default="out/bench-overhead")
    parser.add_argument("--json", default=None, help="write the raw numbers here")
    opts = parser.parse_args()
    if opts.quick:
        opts.repeats, opts.steps, opts.warmup, opts.n_embd, opts.n_layer, opts.vocab, opts.seq, opts.batch = (
            1, 8, 2, 32, 1, 256, 32, 2)  # fmt: skip
    data = Rows(n=opts.batch * (opts.warmup + opts.steps + 2) * 2, seq=opts.seq, vocab=opts.vocab)
    n_params = sum(p.numel() for p in make_model(opts).parameters())
    per_step = {name: [] for name in SETTINGS}
    ref_runs = {"forward": [], "hvp": []}
    for _ in range(opts.repeats):  # the reference is timed inside each repeat too, so it sees the same load
        for name, spec in SETTINGS.items():
            per_step[name].append(run_setting(name, spec, opts, data))
        for key, times in time_forward_and_hvp(opts, data, repeats=3).items():
            ref_runs[key] += times
    ref = {key: statistics.median(times) for key, times in ref_runs.items()}
    median = {name: statistics.median(v) for name, v in per_step.items()}
    plain = median["plain Trainer, constant lr"]
    rows = []
    for name, spec in SETTINGS.items():
        interval = spec.get("gen_interval", 4)
        overhead = median[name] - plain
        if spec.get("gen_mode") == "exact":
            limit, limit_name = ref["hvp"] / interval, "forward + HVP"
        elif name.startswith("plain"):
            limit, limit_name = math.nan, ""
        else:
            limit, limit_name = ref["forward"] / interval, "1 forward"
        rows.append({"setting": name, "step_s": median[name], "overhead": overhead / plain,
                     "limit": limit / plain if limit == limit else None, "limit_is": limit_name,
                     "ratio": overhead / limit if limit == limit else None, "runs_s": per_step[name]})  # fmt: skip
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
    print(f"\nmodel: GPT-2 config, {n_params / 1e6:.1f}M parameters, batch {opts.batch} x {opts.seq} tokens; {device}")
    print(f"median over {opts.repeats} interleaved repeats of the mean step time over {opts.steps} steps")
    print(f"no-grad forward {ref['forward'] * 1e3:.0f} ms, forward + HVP {ref['hvp'] * 1e3:.0f} ms\n")
    print("| setting | s / step | overhead | limit (per step) | overhead / limit |")
    print("|---|---|---|---|---|")
    for r in rows:
        limit = f"{r['limit']:+.1%} ({r['limit_is']})" if r["limit"] is not None else "-"
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else "-"
        print(f"| {r['setting']} | {r['step_s']:.3f} | {r['overhead']:+.1%} | {limit} | {ratio} |")
    if opts.json:
        os.makedirs(os.path.dirname(opts.json) or ".", exist_ok=True)
        with open(opts.json, "w") as handle:
            json.dump({"params": n_params, "device": device, "reference_s": ref, "rows": rows, "options": vars(opts)},
                      handle, indent=2)  # fmt: skip


if __name__ == "__main__":
    main()
