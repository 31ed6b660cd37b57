"""GeN's cost per step and in memory against the plain Trainer, as the model grows.

Usage:
    python benchmarks/size_sweep.py [--repeats 3] [--steps 48] [--batch 4] [--seq 64]
    python benchmarks/size_sweep.py --quick      # a smoke run (two toy sizes, plain and GeN at interval 4 only)

GPT-2-config models of four sizes (about 0.6M to 27M parameters: vocab, n_embd and n_layer grow together, see SIZES)
are trained by the real Trainer on overhead.py's learnable "chain" tokens, batch 4 x 64, under the plain Trainer at a
constant lr, GeN approx with one-step next-batch lines every 4 steps (the default before "averages") and GeN with
adaptive recompute (interval 4, gen_max_interval 32); the fast start is off, as in overhead.py. Each (size, setting)
runs in its own process (memory.py's child), interleaved over sizes, settings and repeats (the order of the settings
rotates each repeat). A child reports the mean step time over ``--steps`` steps after ``--warmup`` warm-up steps, the
GeN updates in that window (from its trace), its peak resident set size right after training, and the time of three no-
grad forwards on one batch (the limit: one forward per recompute).

Per size and GeN setting: plain and GeN s/step (medians over repeats), the overhead, recomputes per step, the limit
(forward time x recomputes per step, over the plain step), overhead / limit, the same overhead read from the step
medians (overhead.py's ``step_medians_s``: bursts of load from other processes barely count) and over the limit, and
the peak RSS over the plain run's in
MB and in copies of the trainable parameters (GeN keeps one copy between the step it is taken and the next one).
Writes the raw numbers to --json, a plot to --plot (overhead and memory copies against parameters, log x) and the
table to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from memory import peak_rss_mb, run_child  # noqa: E402

PLAIN = "plain Trainer, constant lr"
DEFAULT = "GeN approx, interval 4"
ADAPTIVE = "GeN approx, adaptive 4..32"
SETTINGS = (PLAIN, DEFAULT, ADAPTIVE)  # names of overhead.SETTINGS
SIZES = ((4096, 96, 2), (8192, 160, 4), (16384, 256, 6), (32768, 384, 8))  # (vocab, n_embd, n_layer)
QUICK_SIZES = ((256, 32, 1), (1024, 64, 2))


def child(spec: dict) -> None:
    """One training run of one setting at one size; prints its numbers as JSON."""
    import argparse as _argparse

    import torch
    from overhead import SETTINGS as SPECS
    from overhead import Rows, make_model, run_setting, time_forward_and_hvp

    opts = _argparse.Namespace(**spec["opts"])
    data = Rows(n=opts.batch * (opts.warmup + opts.steps + 2) * 2, seq=opts.seq, vocab=opts.vocab, kind="chain")
    result = run_setting(spec["setting"], SPECS[spec["setting"]], opts, data)
    result["rss_mb"] = peak_rss_mb()  # before anything else is allocated
    if torch.cuda.is_available():
        result["cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    result["forward_s"] = time_forward_and_hvp(opts, data, repeats=3, kinds=("forward",))["forward"]
    params = [p for p in make_model(opts).parameters() if p.requires_grad]
    result["params"] = sum(p.numel() for p in params)
    result["param_mb"] = sum(p.numel() * p.element_size() for p in params) / 2**20
    print(json.dumps(result))


def parse_size(text: str) -> tuple[int, int, int]:
    """``"50257x768x12"`` -> (vocab, n_embd, n_layer)."""
    parts = text.lower().split("x")
    if len(parts) != 3 or not all(part.isdigit() and int(part) > 0 for part in parts):
        raise SystemExit(f"error: --sizes takes VOCABxN_EMBDxN_LAYER, e.g. 50257x768x12; got {text!r}")
    return int(parts[0]), int(parts[1]), int(parts[2])


def summarise(runs: dict, opts) -> list[dict]:
    """The table's rows (one per size and GeN setting) from ``runs[size_index][setting]``: lists of child results."""
    rows = []
    for index, by_setting in runs.items():
        plain_runs = by_setting[PLAIN]
        plain = statistics.median(r["step_s"] for r in plain_runs)
        plain_medians = statistics.median(r["step_medians_s"] for r in plain_runs)
        memory = "cuda_mb" if "cuda_mb" in plain_runs[0] else "rss_mb"  # on a GPU its peak allocation, else RSS
        plain_rss = statistics.median(r[memory] for r in plain_runs)
        forward = statistics.median(t for results in by_setting.values() for r in results for t in r["forward_s"])
        for name in SETTINGS[1:]:
            if name not in by_setting:
                continue
            results = by_setting[name]
            step_s = statistics.median(r["step_s"] for r in results)
            by_medians = statistics.median(r["step_medians_s"] for r in results) / plain_medians - 1
            rate = statistics.median(len(r["recompute_steps"]) / opts.steps for r in results)
            rss = statistics.median(r[memory] for r in results)
            overhead, limit = step_s / plain - 1, forward * rate / plain
            vocab, n_embd, n_layer = opts.sizes[index]
            rows.append({"size": index, "vocab": vocab, "n_embd": n_embd, "n_layer": n_layer,
                         "params": plain_runs[0]["params"], "param_mb": plain_runs[0]["param_mb"], "setting": name,
                         "plain_s": plain, "gen_s": step_s, "overhead": overhead, "recomputes_per_step": rate,
                         "overhead_step_medians": by_medians, "ratio_step_medians": by_medians / limit,
                         "forward_s": forward, "limit": limit, "ratio": overhead / limit if limit > 0 else None,
                         "memory": memory, "plain_rss_mb": plain_rss, "rss_over_plain_mb": rss - plain_rss,
                         "copies": (rss - plain_rss) / plain_runs[0]["param_mb"]})  # fmt: skip
    return rows


def plot(rows: list[dict], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, marker in ((DEFAULT, "o"), (ADAPTIVE, "s")):
        mine = [r for r in rows if r["setting"] == name]
        if not mine:
            continue
        params = [r["params"] for r in mine]
        (line,) = left.plot(params, [100 * r["overhead_step_medians"] for r in mine], marker=marker,
                            label=f"{name} (step medians)")  # fmt: skip
        left.plot(params, [100 * r["overhead"] for r in mine], marker=marker, ls=":", mfc="none",
                  color=line.get_color(), alpha=0.6, label=f"{name} (window means)")  # fmt: skip
        left.plot(params, [100 * r["limit"] for r in mine], ls="--", color=line.get_color(),
                  label=f"limit: 1 forward per recompute ({name.split(', ')[1]})")  # fmt: skip
        right.plot(params, [r["copies"] for r in mine], marker=marker, label=name)
    right.axhline(1.0, color="grey", ls=":", label="one copy of the trainable parameters")
    memory = "peak GPU allocation" if rows and rows[0]["memory"] == "cuda_mb" else "peak RSS"
    labels = ("overhead per step over the plain Trainer (%)", f"{memory} over plain (copies)")
    for axis, ylabel in zip((left, right), labels, strict=True):
        axis.set_xscale("log")
        axis.set_xlabel("parameters")
        axis.set_ylabel(ylabel)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=120)


def device_name() -> str:
    """overhead.device_name with the threads each run is given (imports torch: only once the runs are done)."""
    from overhead import device_name as name

    return name(os.environ.get("OMP_NUM_THREADS", "all"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=48, help="timed steps per run (a multiple of 4)")
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument(
        "--sizes",
        nargs="+",
        default=None,
        metavar="VOCABxN_EMBDxN_LAYER",
        help="model sizes, e.g. 50257x768x12 (default: the four of SIZES)",
    )
    parser.add_argument(
        "--settings",
        nargs="+",
        choices=SETTINGS[1:],
        default=list(SETTINGS[1:]),
        help="GeN settings to time against the plain Trainer",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 toy sizes, plain and default GeN")
    parser.add_argument("--out", default="out/bench-size-sweep")
    parser.add_argument("--json", default="benchmarks/results/size_sweep_cpu.json")
    parser.add_argument("--plot", default="benchmarks/results/size_sweep_cpu.png")
    parser.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts._child:
        child(json.loads(opts._child))
        return
    settings = [PLAIN, *opts.settings]
    opts.sizes = [parse_size(text) for text in opts.sizes] if opts.sizes else SIZES
    if opts.quick:
        opts.repeats, opts.steps, opts.warmup, opts.batch, opts.seq, opts.sizes = 1, 8, 2, 2, 32, QUICK_SIZES
        settings = [PLAIN, DEFAULT]
    runs = {index: {name: [] for name in settings} for index in range(len(opts.sizes))}
    for repeat in range(opts.repeats):
        order = settings[repeat % len(settings) :] + settings[: repeat % len(settings)]
        for index, (vocab, n_embd, n_layer) in enumerate(opts.sizes):
            for name in order:
                child_opts = {"vocab": vocab, "n_embd": n_embd, "n_layer": n_layer, "seq": opts.seq,
                              "batch": opts.batch, "warmup": opts.warmup, "steps": opts.steps,
                              "out": os.path.join(opts.out, f"size{index}")}  # fmt: skip
                runs[index][name].append(run_child(os.path.abspath(__file__), {"setting": name, "opts": child_opts}))
    rows = summarise(runs, opts)
    print(f"\nGPT-2 config sizes, batch {opts.batch} x {opts.seq} tokens (chain), {device_name()}; median over "
          f"{opts.repeats} interleaved repeats of the mean step time over {opts.steps} steps after {opts.warmup} "
          "warm-up steps; fast start off\n")  # fmt: skip
    print("| params (vocab, n_embd, n_layer) | setting | plain s/step | GeN s/step | overhead | recomputes per step | "
          "limit (1 forward per recompute) | overhead / limit | overhead (step medians) | its / limit | "
          f"{'peak GPU allocation' if rows and rows[0]['memory'] == 'cuda_mb' else 'peak RSS'} over plain (MB) | "
          "in copies of the parameters |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else "-"
        print(f"| {r['params'] / 1e6:.2f}M ({r['vocab']}, {r['n_embd']}, {r['n_layer']}) | {r['setting']} | "
              f"{r['plain_s']:.3f} | {r['gen_s']:.3f} | {r['overhead']:+.1%} | {r['recomputes_per_step']:.3f} | "
              f"{r['limit']:+.1%} | {ratio} | {r['overhead_step_medians']:+.1%} | {r['ratio_step_medians']:.2f}x | "
              f"{r['rss_over_plain_mb']:+.0f} | {r['copies']:+.2f} |")  # fmt: skip
    options = {key: value for key, value in vars(opts).items() if key != "_child"}
    if opts.json:
        os.makedirs(os.path.dirname(opts.json) or ".", exist_ok=True)
        with open(opts.json, "w") as handle:
            json.dump({"rows": rows, "runs": runs, "options": options}, handle, indent=2)
    if opts.plot:
        plot(rows, opts.plot, f"GeN against the plain Trainer, batch {opts.batch} x {opts.seq}, {device_name()}, "
             f"median of {opts.repeats}")  # fmt: skip


if __name__ == "__main__":
    main()
