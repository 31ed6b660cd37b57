"""Peak memory of a training run with and without GeN (the default holds two copies of the trainable parameters).

Usage:
    python benchmarks/memory.py [--repeats 2] [--n_embd 512] [--n_layer 8] [--steps 4]

Each configuration runs in its own process (interleaved over repeats); the child reports its peak resident set size
(ru_maxrss). On a GPU machine it also reports torch.cuda.max_memory_allocated. Prints a markdown table: median peak,
the difference from the plain Trainer, and the size of one copy of the trainable parameters.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys

CONFIGS = {
    "plain Trainer (constant lr)": {"lr_scheduler_type": "constant"},
    # the default; settled from the start with one-step windows, so that its two copies exist within the few steps
    "GeN approx (default: averages)": {"lr_scheduler_type": "gen", "gen_fast_start": False, "gen_window": 1},
    # the default as it starts: the fast start's windows (of gen_interval = 1 step here) and the last step's line,
    # whose copy is held alongside the two window copies until it is measured
    "GeN approx (default: averages), fast start": {"lr_scheduler_type": "gen"},
    # an option: the mean of the last steps' weights (gen_tail_average=1: its sum held from the first step)
    "GeN approx (default: averages), tail average": {
        "lr_scheduler_type": "gen",
        "gen_fast_start": False,
        "gen_window": 1,
        "gen_tail_average": 1.0,
    },
    "GeN approx, next batch": {"lr_scheduler_type": "gen", "gen_mode": "approx", "gen_probe_batch": "next"},
    "GeN approx, next batch, offloaded copy": {
        "lr_scheduler_type": "gen",
        "gen_mode": "approx",
        "gen_probe_batch": "next",
        "gen_offload_snapshot": True,
    },
    "GeN approx, same batch": {"lr_scheduler_type": "gen", "gen_mode": "approx", "gen_probe_batch": "same"},
    "GeN approx, same batch, line search on step 1": {
        "lr_scheduler_type": "gen",
        "gen_mode": "approx",
        "gen_probe_batch": "same",
        "learning_rate": 1e-1,
    },
    "GeN exact": {"lr_scheduler_type": "gen", "gen_mode": "exact"},
}


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB (``ru_maxrss`` is in kB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(script: str, spec: dict) -> dict:
    """Run ``script --_child SPEC`` in a fresh interpreter (offline) and return the JSON object it prints last.

    Each measurement in its own process, so that its peak resident set size is its own.
    """
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, script, "--_child", json.dumps(spec)], env=env, capture_output=True,
                          text=True)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{os.path.basename(script)} child {spec} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def child(spec: dict) -> None:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from hf_gen import GeNTrainer, GeNTrainingArguments
    from hf_gen.trace import read_trace

    class Rows(torch.utils.data.Dataset):
        def __len__(self):
            return 64

        def __getitem__(self, i):
            ids = torch.randint(0, 50257, (spec["seq"],), generator=torch.Generator().manual_seed(i))
            return {"input_ids": ids, "labels": ids}

    torch.manual_seed(0)
    config = GPT2Config(n_embd=spec["n_embd"], n_layer=spec["n_layer"], n_head=8, n_positions=spec["seq"],
                        attn_implementation="eager")  # fmt: skip
    model = GPT2LMHeadModel(config)
    cuda = torch.cuda.is_available()
    settings = {"learning_rate": 1e-4, "gen_interval": 1, **spec["args"]}  # a start 1000x off: the fast start runs
    args = GeNTrainingArguments(output_dir=spec["out"], max_steps=spec["steps"], per_device_train_batch_size=2,
                                report_to="none", save_strategy="no", disable_tqdm=True, use_cpu=not cuda,
                                **settings)  # fmt: skip
    GeNTrainer(model=model, args=args, train_dataset=Rows()).train()
    params = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    result = {"rss_mb": peak_rss_mb(), "param_mb": params / 2**20}
    if settings.get("lr_scheduler_type") == "gen":  # probe points per GeN update (approx: one forward each)
        result["probes"] = [len(r.get("probe_losses", [])) for r in read_trace(spec["out"])]
    if cuda:
        result["cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--n_embd", type=int, default=512)
    parser.add_argument("--n_layer", type=int, default=8)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--out", default="out/bench-memory")
    parser.add_argument(
        "--configs",
        nargs="+",
        default=list(CONFIGS),
        choices=list(CONFIGS),
        help="configurations to measure (the plain Trainer and next batch are always measured)",
    )
    parser.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts._child:
        child(json.loads(opts._child))
        return
    chosen = {"plain Trainer (constant lr)", "GeN approx, next batch", *opts.configs}
    results = {name: [] for name in CONFIGS if name in chosen}
    for _ in range(opts.repeats):
        for name in results:
            extra = CONFIGS[name]
            spec = {"args": extra, "n_embd": opts.n_embd, "n_layer": opts.n_layer, "seq": opts.seq,
                    "steps": opts.steps, "out": os.path.join(opts.out, name.replace(" ", "_"))}  # fmt: skip
            results[name].append(run_child(__file__, spec))
    base = statistics.median(r["rss_mb"] for r in results["plain Trainer (constant lr)"])
    param_mb = results["GeN approx, next batch"][0]["param_mb"]
    print(f"model: GPT-2 config n_embd={opts.n_embd} n_layer={opts.n_layer}, one copy of the trainable "
          f"parameters = {param_mb:.0f} MB; batch 2 x {opts.seq}; {opts.steps} steps, gen_interval=1 unless set; "
          f"median of {opts.repeats} runs\n")  # fmt: skip
    print("| configuration | peak RSS (MB) | over plain (MB) | over plain / one copy | probe points per update |")
    print("|---|---|---|---|---|")
    for name, runs in results.items():
        peak = statistics.median(r["rss_mb"] for r in runs)
        probes = ", ".join(map(str, runs[0].get("probes", []))) or "-"
        print(f"| {name} | {peak:.0f} | {peak - base:+.0f} | {(peak - base) / param_mb:+.2f} | {probes} |")
    if "cuda_mb" in results["GeN approx, next batch"][0]:
        print("\n| configuration | peak CUDA allocated (MB) |\n|---|---|")
        for name, runs in results.items():
            print(f"| {name} | {statistics.median(r['cuda_mb'] for r in runs):.0f} |")


if __name__ == "__main__":
    main()
