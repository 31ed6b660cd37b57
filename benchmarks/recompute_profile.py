"""Where the time of one GeN recompute goes, and what the fast start costs on the first steps.

Usage:
    python benchmarks/recompute_profile.py [--repeats 20] [--step_repeats 3] [--start_steps 16] [--json PATH]
    python benchmarks/recompute_profile.py --quick      # a smoke run (tiny model)

The model is overhead.py's (GPT-2 config, about 10M parameters at the defaults, batch 8 x 128 tokens of its learnable
"chain" stream), trained by the real Trainer on CPU.

1. The pieces of one recompute of GeN approx with next-batch probes (the default until "averages"), each timed on its
   own through the library's own calls, interleaved over ``--repeats`` rounds (median): the copy of the trainable
   parameters (``LineSnapshot``, on the step before a recompute), and on the recompute step the random-state capture
   (``RngState``), the slope dot product (``LineSnapshot.slope_numerator``, i.e. ``directional_dot``), the two swaps to
   the old weights and back, the probe forward (``GeNMixin._gen_batch_loss``: no-grad forward with the buffer guard and
   the replayed random state) next to a bare no-grad forward, the scalar bookkeeping that syncs with the device on an
   accelerator (overflow check, clip factor, ``.tolist()``), the fit and the scheduler update, and the trace write
   (``make_record`` + ``append_record``).
2. Whole steps: a GeN run (gen_interval 4, fast start off) and a plain Trainer run, interleaved over
   ``--step_repeats``; each GeN step after the warm-up is classed by the trace as the recompute step, the step
   before it (which takes the copy) or a step with no GeN work, and its median time is set against the plain step.
3. The fast start: starting lrs 10x to 10^4x above and below ``--lr_ref`` (the largest, 1.0, is gen_lr_max's default),
   with the default next-batch probes and with ``gen_probe_batch="same"`` (whose fast start searches the first
   step's line), ``--start_steps`` steps each, plain runs interleaved. Per run: the fast-start updates (trace records
   with ``interval == 1``), the step where the fast start settled (the first record with a longer interval), the
   extra no-grad forwards (counted by a forward hook; in brackets what the trace's ``probe_losses`` account for: a
   first step that passes the next-batch check costs one forward and writes no record) on step 1 and until settled,
   and the time of step 1 and of the steps until settled next to the plain run's same steps.

Prints markdown tables; ``--json`` writes the raw numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402
from overhead import Rows, StepClock, clock, device_name, make_model  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from hf_gen import GeNTrainer, GeNTrainingArguments  # noqa: E402
from hf_gen.core import fit_line  # noqa: E402
from hf_gen.line import LineSnapshot, RngState  # noqa: E402
from hf_gen.schemes import StepRecord  # noqa: E402
from hf_gen.support import check_linear_optimizer, overflowed  # noqa: E402
from hf_gen.trace import append_record, make_record, read_trace  # noqa: E402

FACTORS = (10, 100, 1000, 10_000)
PROBES = ("next", "same")


def make_trainer(opts, data, out, steps, callbacks=(), **settings):
    # the one-step next-batch scheme (the default before "averages") unless a setting says otherwise
    settings = {"lr_scheduler_type": "gen", "gen_interval": 4, "learning_rate": opts.lr_ref, "gen_probe_batch": "next",
                **settings}  # fmt: skip
    args = GeNTrainingArguments(output_dir=out, max_steps=steps, per_device_train_batch_size=opts.batch,
                                report_to="none", save_strategy="no", disable_tqdm=True, logging_steps=10_000,
                                use_cpu=not torch.cuda.is_available(), max_grad_norm=1.0, dataloader_drop_last=True,
                                seed=0, **settings)  # fmt: skip
    return GeNTrainer(model=make_model(opts), args=args, train_dataset=data, callbacks=list(callbacks))


def median_ms(times):
    return statistics.median(times) * 1e3


# ---- 1. the pieces of one recompute --------------------------------------------------------------------------------


def time_pieces(opts, data, out):
    """Times (s) of each piece of a next-batch recompute, through the library's calls, over interleaved rounds."""
    trainer = make_trainer(opts, data, os.path.join(out, "pieces"), steps=2, gen_fast_start=False)
    trainer.train()  # sets up the optimizer, the GeN scheduler and the Trainer's per-run state
    model, scheduler = trainer.model, trainer.lr_scheduler
    optimizer = check_linear_optimizer(trainer.optimizer)
    params = trainer._gen_params(optimizer)
    inputs = trainer._prepare_inputs({key: torch.stack([data[i][key] for i in range(opts.batch)])
                                      for key in ("input_ids", "labels")})  # fmt: skip
    model.train()
    model.zero_grad()
    loss = trainer.compute_loss(model, inputs)
    loss.backward()
    grads = [p.grad for p in params]
    device = trainer.args.device
    record = StepRecord(measures=True, batch=[(inputs, RngState(device))])
    record.grad_norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))
    loss1 = loss.detach().to(torch.float64)
    lr0 = float(optimizer.param_groups[0]["lr"])
    snapshot = LineSnapshot(params, lr0)
    trace_dir = tempfile.mkdtemp(dir=out)

    def bare_forward():
        with torch.no_grad():
            model(**inputs).loss.item()

    def bookkeeping():
        overflowed(optimizer)
        slope = trainer._gen_reduce(torch.zeros((), dtype=torch.float64)) / (lr0 * trainer._gen_clip_factor(record))
        torch.stack([slope, trainer._gen_reduce(loss1), trainer._gen_reduce(loss1)]).tolist()

    def fit_and_update():
        estimate = fit_line([0.0], [9.70], known_at=lr0, loss=9.69, slope=50.0)
        scheduler.apply_estimate(estimate, scheduler.last_epoch)
        return estimate

    estimate = fit_and_update()

    def swap_there_and_back():
        with snapshot.at_start():
            pass

    def trace_write():
        record = make_record(step=1, lr=lr0, estimate=estimate, probe_lr=lr0, mode="approx", fallback=None,
                             interval=4, probe_batch="next", probe_losses=[[0.0, 9.70], [lr0, 9.69]])  # fmt: skip
        append_record(trace_dir, record)

    pieces = {
        "copy of the parameters (LineSnapshot)": ("before", lambda: LineSnapshot(params, lr0)),
        "random-state capture (RngState)": ("recompute", lambda: RngState(device)),
        "slope dot product (slope_numerator)": ("recompute", lambda: snapshot.slope_numerator(grads).item()),
        "swap to the old weights and back (2 x swap)": ("recompute", swap_there_and_back),
        "probe forward (_gen_batch_loss)": ("recompute", lambda: trainer._gen_batch_loss(record).item()),
        "scalar bookkeeping and .tolist() (host syncs)": ("recompute", bookkeeping),
        "fit and scheduler update": ("recompute", fit_and_update),
        "trace write (make_record + append_record)": ("recompute", trace_write),
        "bare no-grad forward (reference)": ("-", bare_forward),
    }
    times = {name: [] for name in pieces}
    for _, fn in pieces.values():
        fn()
    for _ in range(opts.repeats):
        for name, (_, fn) in pieces.items():
            start = clock()
            fn()
            times[name].append(clock() - start)
    n_params = sum(p.numel() for p in params)
    return {name: {"step": pieces[name][0], "runs_s": runs, "ops": count_ops(pieces[name][1])}
            for name, runs in times.items()}, n_params  # fmt: skip


def count_ops(fn) -> int:
    """How many torch operators that touch data one call of ``fn`` dispatches at the top level: calls nested inside an
    operator, the operators in ``NO_DATA`` (views, allocations, ``detach``) and a ``.to`` that changes nothing are
    not counted. On a GPU each counted operator launches at least one kernel: the fixed cost that
    dominates for small models there (a fused ``_foreach`` operator covers many tensors in one or a few launches)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()

    def nested(event):
        parent = event.cpu_parent
        while parent is not None:
            if parent.name.startswith("aten::"):
                return True
            parent = parent.cpu_parent
        return False

    def touches_data(event):
        if event.name == "aten::to":  # a copy when it converts or moves (it then calls _to_copy), else a no-op
            return any(child.name == "aten::_to_copy" for child in event.cpu_children)
        return event.name not in NO_DATA

    return sum(1 for event in prof.events()
               if event.name.startswith("aten::") and touches_data(event) and not nested(event))  # fmt: skip


NO_DATA = {f"aten::{name}" for name in ("detach", "empty", "empty_like", "reshape", "view", "split", "alias",
                                        "slice", "select", "t", "unsqueeze", "lift_fresh")}  # fmt: skip


# ---- 2. whole steps ------------------------------------------------------------------------------------------------


def time_steps(opts, data, out):
    """Step times (s) of a plain run and a GeN run (interval 4, no fast start), the GeN steps classed by the trace."""
    kinds = {"plain": [], "no GeN work": [], "copy (before a recompute)": [], "recompute": []}
    total = opts.warmup + opts.steps
    for _ in range(opts.step_repeats):
        for plain in (True, False):
            clock = StepClock()
            settings = {"lr_scheduler_type": "constant"} if plain else {"gen_fast_start": False}
            run_dir = os.path.join(out, "steps_plain" if plain else "steps_gen")
            make_trainer(opts, data, run_dir, total, callbacks=[clock], **settings).train()
            durations = [end - begin for begin, end in zip(clock.begins, clock.stamps, strict=True)]
            fits = set() if plain else {record["step"] for record in read_trace(run_dir)}
            for step in range(opts.warmup + 1, total + 1):  # 1-based
                if plain:
                    kind = "plain"
                elif step in fits:
                    kind = "recompute"
                elif step + 1 in fits or step == max(fits) + 3:  # the copy for the next fit
                    kind = "copy (before a recompute)"
                else:
                    kind = "no GeN work"
                kinds[kind].append(durations[step - 1])
    return kinds


# ---- 3. the fast start ---------------------------------------------------------------------------------------------


class ForwardCount(TrainerCallback):
    """Counts the model's no-grad forwards (GeN's probes; the training forwards run with grad), at each step's end."""

    def __init__(self, model):
        self.count, self.per_step = 0, []
        model.register_forward_pre_hook(self._hook)

    def _hook(self, module, args):
        if not torch.is_grad_enabled():
            self.count += 1

    def on_step_end(self, args, state, control, **kwargs):
        self.per_step.append(self.count)


def trace_forwards(records, steps):
    """Extra forwards the trace accounts for up to ``steps``: one per next-batch record (the loss at the old weights;
    the other point is the training forward), every probe point of a same-batch record."""
    return sum(1 if r["probe_batch"] == "next" else len(r["probe_losses"]) for r in records if r["step"] <= steps)


def fast_start_run(opts, data, out, lr, probe):
    clock = StepClock()
    settings = {"learning_rate": lr}
    if probe == "plain":
        settings["lr_scheduler_type"] = "constant"
    else:
        settings["gen_probe_batch"] = probe
    run_dir = os.path.join(out, f"start_{probe}_{lr:g}")
    trainer = make_trainer(opts, data, run_dir, opts.start_steps, callbacks=[clock], **settings)
    counter = ForwardCount(trainer.model)
    trainer.add_callback(counter)
    trainer.train()
    durations = [end - begin for begin, end in zip(clock.begins, clock.stamps, strict=True)]
    records = read_trace(run_dir)
    later = [r["step"] for r in records if r["interval"] != 1]
    settled = later[0] if later else None
    last = settled or opts.start_steps
    return {"lr": lr, "probe": probe, "step_s": durations, "forwards_per_step": counter.per_step,
            "records": len(records), "fast_start_updates": sum(r["interval"] == 1 for r in records),
            "settled_at": settled, "lr_settled": next((r["lr"] for r in records if r["step"] == settled), None),
            "forwards_step1": counter.per_step[0], "forwards_until_settled": counter.per_step[last - 1],
            "trace_forwards_until_settled": trace_forwards(records, last),
            "probe_points": sum(len(r.get("probe_losses", [])) for r in records if r["step"] <= last)}  # fmt: skip


def fast_start(opts, data, out):
    lrs = [opts.lr_ref * f for f in opts.factors] + [opts.lr_ref / f for f in opts.factors]
    runs, plain = [], []
    for i, lr in enumerate(lrs):
        if i % 2 == 0:  # plain runs interleaved, one per pair of starting lrs
            plain.append(fast_start_run(opts, data, out, opts.lr_ref, "plain")["step_s"])
        for probe in PROBES:
            runs.append(fast_start_run(opts, data, out, lr, probe))
    plain_step = [statistics.median(run[k] for run in plain) for k in range(opts.start_steps)]
    for run in runs:
        last = run["settled_at"] or opts.start_steps
        run["step1_vs_plain"] = run["step_s"][0] / plain_step[0]
        run["until_settled_vs_plain"] = sum(run["step_s"][:last]) / sum(plain_step[:last])
    return runs, plain_step


# ---- report --------------------------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description="Where one GeN recompute's time goes; the fast start's cost.")
    parser.add_argument("--repeats", type=int, default=20, help="rounds of the piece timings")
    parser.add_argument("--step_repeats", type=int, default=3, help="interleaved plain/GeN runs for the step times")
    parser.add_argument("--steps", type=int, default=16, help="timed steps per run (a multiple of 4)")
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--start_steps", type=int, default=16, help="steps of each fast-start run")
    parser.add_argument("--lr_ref", type=float, default=1e-4, help="the reasonable lr the starting lrs are off from")
    parser.add_argument("--factors", type=float, nargs="+", default=list(FACTORS))
    parser.add_argument("--n_embd", type=int, default=256)
    parser.add_argument("--n_layer", type=int, default=6)
    parser.add_argument("--vocab", type=int, default=16384)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny model, starts 10^4x off")
    parser.add_argument("--out", default="out/bench-recompute")
    parser.add_argument("--json", default=None, help="write the raw numbers here")
    opts = parser.parse_args()
    if opts.quick:
        opts.repeats, opts.step_repeats, opts.steps, opts.warmup, opts.start_steps = 3, 1, 8, 2, 6
        opts.factors, opts.n_embd, opts.n_layer, opts.vocab, opts.seq, opts.batch = [1e4], 32, 1, 256, 32, 2
    os.makedirs(opts.out, exist_ok=True)
    n_rows = opts.batch * max(opts.warmup + opts.steps, opts.start_steps) * 2
    data = Rows(n=n_rows, seq=opts.seq, vocab=opts.vocab, kind="chain")

    pieces, n_params = time_pieces(opts, data, opts.out)
    steps = time_steps(opts, data, opts.out)
    plain = statistics.median(steps["plain"])
    device = device_name()
    print(f"\nmodel: GPT-2 config, {n_params / 1e6:.1f}M parameters, batch {opts.batch} x {opts.seq} tokens; {device}")
    print(f"\n## The pieces of one recompute (median of {opts.repeats} interleaved rounds)\n")
    print("| piece | on step | ms | % of a plain step | torch operators touching data |")
    print("|---|---|---|---|---|")
    sums = {"before": 0.0, "recompute": 0.0}
    for name, piece in pieces.items():
        ms = median_ms(piece["runs_s"])
        sums[piece["step"]] = sums.get(piece["step"], 0.0) + ms
        print(f"| {name} | {piece['step']} | {ms:.2f} | {ms / (plain * 1e3):.2%} | {piece['ops']} |")
    for step, label in (("before", "the step before a recompute"), ("recompute", "the recompute step")):
        print(f"| sum on {label} | {step} | {sums[step]:.1f} | {sums[step] / plain / 1e3:.1%} | |")

    print(f"\n## Whole steps (GeN approx, interval 4, fast start off; {opts.step_repeats} interleaved repeats of "
          f"{opts.steps} steps after {opts.warmup} warm-up steps)\n")  # fmt: skip
    print("| step | n | median s | over a plain step (ms) | over a plain step |")
    print("|---|---|---|---|---|")
    extra = {}
    for kind, times in steps.items():
        if not times:
            continue
        med = statistics.median(times)
        extra[kind] = med - plain
        print(f"| {kind} | {len(times)} | {med:.3f} | {(med - plain) * 1e3:+.1f} | {med / plain - 1:+.1%} |")
    if {"recompute", "copy (before a recompute)"} <= extra.keys():
        per_step = (extra["recompute"] + extra["copy (before a recompute)"]) / 4
        pieces_ms = (sums["recompute"] + sums["before"]) / 4
        print(f"\nrecompute + copy step over plain, spread over the interval of 4: {per_step * 1e3:+.1f} ms per step "
              f"({per_step / plain:+.1%}); the pieces say {pieces_ms:.1f} ms")  # fmt: skip

    runs, plain_step = fast_start(opts, data, opts.out)
    print(f"\n## The fast start ({opts.start_steps} steps per run; reference lr {opts.lr_ref:g}; plain step 1 "
          f"{plain_step[0]:.3f} s, later steps {statistics.median(plain_step[1:]):.3f} s)\n")  # fmt: skip
    print("| start lr | off by | probe batch | fast-start updates | settled at step | lr when settled | "
          "extra forwards on step 1 | extra forwards until settled (trace) | step 1 / plain step 1 | "
          "steps until settled / plain |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        ratio = run["lr"] / opts.lr_ref
        off = f"{ratio:g}x" if ratio >= 1 else f"1/{1 / ratio:g}x"
        settled = str(run["settled_at"]) if run["settled_at"] else f"> {opts.start_steps}"
        lr_settled = f"{run['lr_settled']:.2e}" if run["lr_settled"] is not None else "-"
        print(f"| {run['lr']:g} | {off} | {run['probe']} | {run['fast_start_updates']} | {settled} | {lr_settled} | "
              f"{run['forwards_step1']} | {run['forwards_until_settled']} ({run['trace_forwards_until_settled']}) | "
              f"{run['step1_vs_plain']:.2f}x | "
              f"{run['until_settled_vs_plain']:.2f}x |")  # fmt: skip
    if opts.json:
        os.makedirs(os.path.dirname(opts.json) or ".", exist_ok=True)
        with open(opts.json, "w") as handle:
            json.dump({"params": n_params, "device": device, "plain_step_s": plain, "pieces": pieces,
                       "steps": steps, "fast_start": runs, "plain_start_step_s": plain_step,
                       "options": vars(opts)}, handle, indent=2)  # fmt: skip


if __name__ == "__main__":
    main()
