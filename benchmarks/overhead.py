"""What GeN costs per optimizer step, next to the least it could cost.

Usage:
    python benchmarks/overhead.py [--repeats 5] [--steps 16] [--n_embd 256] [--n_layer 6] [--seq 128] [--batch 8]
    python benchmarks/overhead.py --steps 64 --settings "GeN approx, averages (default)" "GeN approx, adaptive 4..16"
    python benchmarks/overhead.py --quick      # a smoke run (tiny model, 1 repeat)

A GPT-2-style model (about 10M parameters at the defaults) is trained by the real Trainer under each setting, in one
process, the settings interleaved over the repeats: plain Trainer at a constant lr; GeN approx at gen_interval 1, 4
and 8; GeN approx with adaptive recompute (gen_interval 4, gen_max_interval 16 or 32: the gap doubles after each
steady update); GeN exact at 4; the authors' `gen-optim` (PyPI) at its interval 4, driven by a Trainer subclass that
calls its `lr_parabola` between backward and the optimizer step as its README does (three forwards on a fresh batch
and an extra optimizer step per recompute). `--settings` picks a subset (the plain Trainer always runs: it is the
baseline). The time per step is the mean over a window of steps that is a multiple of every fixed interval, after
warm-up steps; the table shows the median over repeats. The adaptive gap can only grow over a long enough window
(`--steps 64`).

Overhead (step medians): the same runs read so that a burst of load from other processes barely counts: each
setting's steps are classed as a GeN update, the step before one (the copy) or neither, and each class enters with its
median time (`step_medians_s`); the plain run's is its median step.

Recomputes per step: the GeN updates that fell in the timed window (from each run's `gen_trace.jsonl`; for gen-optim
its `lr_parabola` calls), over the window's steps; the median over repeats is shown.

The limit: approximate GeN needs at least one extra no-grad forward per recompute (the slope comes from the backward
pass, the loss at the current point from the training forward). A no-grad forward on the same batch is timed, and
each setting's overhead is printed next to that limit times the recomputes per step it made (overhead / limit; at a
fixed interval that is the forward / interval). The averages scheme (the default) has no point of its line at the
live weights: three forwards per recompute are its limit (its per-step addition of the weights is overhead above
it), four while its fast start also measures the last step's line. The settings run with the fast start off (the
steady state) unless their name says otherwise. Exact GeN is compared with one forward plus one Hessian-vector
product (forward, backward with graph, second backward) timed on its own.
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
from hf_gen.trace import read_trace  # noqa: E402

LR = 3e-4


class Rows(torch.utils.data.Dataset):
    """``n`` token rows of length ``seq``. ``"random"``: uniform tokens (nothing to learn; the loss stays at about
    log(vocab)); ``"chain"``: each token is a fixed permutation of the one before with probability 0.9, else uniform
    (a bigram map the model can learn, so the line has a minimum the lr can settle on)."""

    def __init__(self, n, seq, vocab, kind="random"):
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, vocab, (n, seq), generator=g)
        if kind == "chain":
            successor = torch.randperm(vocab, generator=g)
            follow = torch.rand(n, seq, generator=g) < 0.9
            for t in range(1, seq):
                self.ids[:, t] = torch.where(follow[:, t], successor[self.ids[:, t - 1]], self.ids[:, t])

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def clock() -> float:
    """``time.perf_counter()`` once the GPU's queued work is done (CUDA runs asynchronously; on CPU a plain read)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


def device_name(threads: str | int | None = None) -> str:
    """The GPU's name, or the CPU with its torch threads (``threads``: as the runs are told, if not this process's)."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"CPU, {threads if threads is not None else torch.get_num_threads()} threads"


class StepClock(TrainerCallback):
    """``clock()`` at the start (``begins``) and end (``stamps``) of every optimizer step."""

    def __init__(self):
        self.begins, self.stamps = [], []

    def on_step_begin(self, args, state, control, **kwargs):
        self.begins.append(clock())

    def on_step_end(self, args, state, control, **kwargs):
        self.stamps.append(clock())


class AuthorsGeNTrainer(Trainer):
    """Drives the authors' `gen-optim` as its README does: `lr_parabola(...)` after backward, before `step()`."""

    lazy_freq = 4

    def __init__(self, *args, fresh_batches=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._fresh = fresh_batches
        self.recompute_steps = []  # 1-based steps whose lr a `lr_parabola` call set

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.accelerator.sync_gradients and (self.state.global_step + 1) % self.lazy_freq == 0:
            from GeN import lr_parabola

            inner = self.optimizer.optimizer if hasattr(self.optimizer, "optimizer") else self.optimizer
            self.recompute_steps.append(self.state.global_step + 1)
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
    "GeN approx, averages (default)": {"lr_scheduler_type": "gen"},
    # the same from its start: the fast start's 4-step windows, each with the last step's line as well
    "GeN approx, averages (default), fast start": {"lr_scheduler_type": "gen", "gen_fast_start": True},
    # the default's windows in a 200-step run (a twentieth of it): what a short fine-tune pays per step once settled
    "GeN approx, averages (default), windows of 10": {"lr_scheduler_type": "gen", "gen_window": 10},
    # an option, not a default: the run ending on the mean of its last steps' weights, here every step's
    # (gen_tail_average=1: the per-step cost)
    "GeN approx, averages (default), tail average": {"lr_scheduler_type": "gen", "gen_tail_average": 1.0},
    "GeN approx, interval 1": {"lr_scheduler_type": "gen", "gen_interval": 1, "gen_probe_batch": "next"},
    "GeN approx, interval 4": {"lr_scheduler_type": "gen", "gen_interval": 4, "gen_probe_batch": "next"},
    "GeN approx, interval 8": {"lr_scheduler_type": "gen", "gen_interval": 8, "gen_probe_batch": "next"},
    "GeN approx, adaptive 4..16": {"lr_scheduler_type": "gen", "gen_interval": 4, "gen_max_interval": 16,
                                   "gen_probe_batch": "next"},
    "GeN approx, adaptive 4..32": {"lr_scheduler_type": "gen", "gen_interval": 4, "gen_max_interval": 32,
                                   "gen_probe_batch": "next"},
    "GeN exact, interval 4": {"lr_scheduler_type": "gen", "gen_interval": 4, "gen_mode": "exact"},
    "gen-optim (authors), interval 4": {"lr_scheduler_type": "constant", "authors": True},
}  # fmt: skip


def run_setting(name, spec, opts, data):
    """One training run; the mean step time over the timed window and the steps GeN recomputed at inside it."""
    spec = dict(spec)
    authors = spec.pop("authors", False)
    total = opts.warmup + opts.steps
    # gen_fast_start off unless a setting turns it on: the timing is of the steady state (interval as set).
    args = GeNTrainingArguments(output_dir=os.path.join(opts.out, "".join(c if c.isalnum() else "_" for c in name)),
                                max_steps=total, per_device_train_batch_size=opts.batch, learning_rate=LR,
                                report_to="none", save_strategy="no", disable_tqdm=True, logging_steps=10_000,
                                use_cpu=not torch.cuda.is_available(), max_grad_norm=1.0, dataloader_drop_last=True,
                                seed=0, **{"gen_fast_start": False, **spec})  # fmt: skip
    clock = StepClock()
    model = make_model(opts)
    if authors:
        trainer = AuthorsGeNTrainer(model=model, args=args, train_dataset=data, callbacks=[clock],
                                    fresh_batches=fresh_batches(data, opts.batch))  # fmt: skip
    else:
        trainer = GeNTrainer(model=model, args=args, train_dataset=data, callbacks=[clock])
    trainer.train()
    stamps = clock.stamps[opts.warmup - 1 :]  # the ends of steps warmup .. warmup + steps (1-based)
    window = range(opts.warmup + 1, opts.warmup + opts.steps + 1)
    if authors:
        updates = trainer.recompute_steps
        forwards = sum(step in window for step in updates)
    else:
        trace = read_trace(args.output_dir)
        updates = [record["step"] for record in trace]
        # probe forwards: one per next-batch line (its other point is the training forward), three per averages line,
        # and one for the fast start's one-step line beside it (its other point is the training forward too)
        forwards = sum(len(r.get("probe_losses", [])) - (r.get("probe_batch") == "next")
                       + max(len(r.get("one_step_probe_losses") or []) - 1, 0)
                       for r in trace if r["step"] in window)  # fmt: skip
    in_window = [step for step in updates if step in window]
    timed = zip(clock.begins[opts.warmup :], clock.stamps[opts.warmup :], strict=True)
    durations = [end - begin for begin, end in timed]
    by_medians = step_medians_s(durations, in_window, opts.warmup + 1)
    return {"step_s": (stamps[-1] - stamps[0]) / (len(stamps) - 1), "recompute_steps": in_window,
            "probe_forwards": forwards,
            "durations_s": durations, "step_medians_s": by_medians}  # fmt: skip


def step_medians_s(durations, fits, first):
    """A time per step that bursts of load on a shared machine barely move: the window's steps are classed as a GeN
    update (``fits``), the step before one (it takes the copy) or neither, and each class counts with its median.
    ``durations[i]`` is the time of step ``first + i`` (1-based); with no updates, the median step."""
    kinds = {"update": [], "copy": [], "other": []}
    for step, duration in enumerate(durations, start=first):
        kinds["update" if step in fits else "copy" if step + 1 in fits else "other"].append(duration)
    return sum(len(times) * statistics.median(times) for times in kinds.values() if times) / len(durations)


def time_forward_and_hvp(opts, data, repeats, kinds=("forward", "hvp")):
    """Times of a no-grad forward, and of forward + Hessian-vector product, on one training batch (``kinds``)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"  # where the Trainer trains
    model = make_model(opts).to(device)
    model.train()
    batch = {key: torch.stack([data[i][key] for i in range(opts.batch)]).to(device) for key in ("input_ids", "labels")}
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
        if name not in kinds:
            continue
        fn()
        out[name] = []
        for _ in range(repeats):
            start = clock()
            fn()
            out[name].append(clock() - start)
    return out


PLAIN = "plain Trainer, constant lr"


def summarise(per_step, ref, settings):
    """The table's rows: median step time, overhead over the plain Trainer, recomputes per step and the limit."""
    plain = statistics.median(run["step_s"] for run in per_step[PLAIN])
    plain_medians = statistics.median(run["step_medians_s"] for run in per_step[PLAIN])
    rows = []
    for name in settings:
        spec, runs = SETTINGS[name], per_step[name]
        step_s = statistics.median(run["step_s"] for run in runs)
        by_medians = statistics.median(run["step_medians_s"] for run in runs) / plain_medians - 1
        overhead = step_s - plain
        rate = statistics.median(len(run["recompute_steps"]) / run["window"] for run in runs)
        if name == PLAIN:
            limit, limit_name, rate = math.nan, "", None
        elif spec.get("gen_mode") == "exact":
            limit, limit_name = ref["hvp"] * rate, "forward + HVP"
        else:
            forwards = statistics.median(run["probe_forwards"] / run["window"] for run in runs)
            per = forwards / rate if rate else 0.0
            limit = ref["forward"] * forwards
            limit_name = "1 forward" if per == 1 else f"{per:.3g} forwards"
        known = limit == limit and limit > 0
        rows.append({"setting": name, "step_s": step_s, "overhead": overhead / plain, "recomputes_per_step": rate,
                     "overhead_step_medians": by_medians,
                     "limit": limit / plain if known else None, "limit_is": limit_name,
                     "ratio": overhead / limit if known else None, "runs_s": [run["step_s"] for run in runs],
                     "recompute_steps": [run["recompute_steps"] for run in runs]})  # fmt: skip
    return rows


def print_table(rows):
    print("| setting | s / step | overhead | recomputes per step | limit (per step) | overhead / limit | "
          "overhead (step medians) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        rate = f"{r['recomputes_per_step']:.3f}" if r["recomputes_per_step"] is not None else "-"
        limit = f"{r['limit']:+.1%} ({r['limit_is']})" if r["limit"] is not None else "-"
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else "-"
        print(f"| {r['setting']} | {r['step_s']:.3f} | {r['overhead']:+.1%} | {rate} | {limit} | {ratio} | "
              f"{r['overhead_step_medians']:+.1%} |")  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description="GeN's cost per optimizer step, next to its limit.")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per run (a multiple of 8; default 16)")
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--n_embd", type=int, default=256)
    parser.add_argument("--n_layer", type=int, default=6)
    parser.add_argument("--vocab", type=int, default=16384)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--data", choices=("random", "chain"), default="random",
                        help="training tokens: uniform, or a learnable bigram chain (see Rows)")  # fmt: skip
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS),
                        help="the settings to time (the plain Trainer always runs)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny model, one repeat, 8 steps (or --steps)")
    parser.add_argument("--out", default="out/bench-overhead")
    parser.add_argument("--json", default=None, help="write the raw numbers here")
    opts = parser.parse_args()
    if opts.quick:
        opts.repeats, opts.warmup, opts.n_embd, opts.n_layer, opts.vocab, opts.seq, opts.batch = (
            1, 2, 32, 1, 256, 32, 2)  # fmt: skip
    opts.steps = opts.steps or (8 if opts.quick else 16)
    settings = [name for name in SETTINGS if name == PLAIN or name in opts.settings]
    kinds = ("forward", "hvp") if any(SETTINGS[name].get("gen_mode") == "exact" for name in settings) else ("forward",)
    data = Rows(n=opts.batch * (opts.warmup + opts.steps + 2) * 2, seq=opts.seq, vocab=opts.vocab, kind=opts.data)
    n_params = sum(p.numel() for p in make_model(opts).parameters())
    per_step = {name: [] for name in settings}
    ref_runs = {key: [] for key in kinds}
    for _ in range(opts.repeats):  # the reference is timed inside each repeat too, so it sees the same load
        for name in settings:
            per_step[name].append({**run_setting(name, SETTINGS[name], opts, data), "window": opts.steps})
        for key, times in time_forward_and_hvp(opts, data, repeats=3, kinds=kinds).items():
            ref_runs[key] += times
    ref = {key: statistics.median(times) for key, times in ref_runs.items()}
    rows = summarise(per_step, ref, settings)
    device = device_name()
    print(f"\nmodel: GPT-2 config, {n_params / 1e6:.1f}M parameters, batch {opts.batch} x {opts.seq} tokens "
          f"({opts.data}); {device}")  # fmt: skip
    print(f"median over {opts.repeats} interleaved repeats of the mean step time over {opts.steps} steps")
    hvp = f", forward + HVP {ref['hvp'] * 1e3:.0f} ms" if "hvp" in kinds else ""
    print(f"no-grad forward {ref['forward'] * 1e3:.0f} ms{hvp}\n")
    print_table(rows)
    if opts.json:
        os.makedirs(os.path.dirname(opts.json) or ".", exist_ok=True)
        with open(opts.json, "w") as handle:
            json.dump({"params": n_params, "device": device, "reference_s": ref, "rows": rows, "options": vars(opts)},
                      handle, indent=2)  # fmt: skip


if __name__ == "__main__":
    main()
