"""A short GeN fine-tune that runs anywhere, offline: a small byte-level GPT-2 trained on Python's own source.

Usage:
    python scripts/demo.py [--max_steps 120] [--learning_rate 1e-4] [--output_dir out/demo] [any GeNTrainingArguments flag]

It trains with ``lr_scheduler_type="gen"`` from a deliberately small starting lr and prints the lr trace
(``output_dir/gen_trace.jsonl``): the lr GeN chose at each update, the raw estimate and any fallback.
"""

from __future__ import annotations

import json
import os
import sys
import sysconfig
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel, HfArgumentParser  # noqa: E402

from hf_gen import GeNTrainer, GeNTrainingArguments  # noqa: E402
from hf_gen.trainer import TRACE_FILE  # noqa: E402

BLOCK = 128


class StdlibBytes(torch.utils.data.Dataset):
    """Byte blocks of the Python standard library's source (always present, no download)."""

    def __init__(self, max_bytes: int = 2_000_000):
        root = Path(sysconfig.get_paths()["stdlib"])
        chunks, size = [], 0
        for path in sorted(root.glob("*.py")):
            data = path.read_bytes()
            chunks.append(data)
            size += len(data)
            if size >= max_bytes:
                break
        data = torch.frombuffer(bytearray(b"".join(chunks)), dtype=torch.uint8).long()
        self.blocks = data[: len(data) // BLOCK * BLOCK].view(-1, BLOCK)

    def __len__(self):
        return len(self.blocks)

    def __getitem__(self, i):
        return {"input_ids": self.blocks[i], "labels": self.blocks[i]}


def main(argv: list[str]) -> None:
    defaults = {
        "output_dir": "out/demo",
        "lr_scheduler_type": "gen",
        "learning_rate": 1e-4,
        "max_steps": 120,
        "per_device_train_batch_size": 16,
        "logging_steps": 20,
        "save_strategy": "no",
        "report_to": "none",
        "seed": 0,
    }
    args_list = [f"--{k}={v}" for k, v in defaults.items() if f"--{k}" not in " ".join(argv)] + argv
    (args,) = HfArgumentParser(GeNTrainingArguments).parse_args_into_dataclasses(args_list)
    torch.manual_seed(args.seed)
    config = GPT2Config(vocab_size=256, n_positions=BLOCK, n_embd=128, n_layer=4, n_head=4, attn_implementation="eager")
    model = GPT2LMHeadModel(config)
    trainer = GeNTrainer(model=model, args=args, train_dataset=StdlibBytes())
    result = trainer.train()
    print(f"\nfinal training loss {result.training_loss:.4f}; lr trace ({TRACE_FILE}):")
    print(f"{'step':>5} {'lr':>10} {'estimate':>10} {'fallback':>10}")
    with open(os.path.join(args.output_dir, TRACE_FILE)) as handle:
        for line in handle:
            r = json.loads(line)
            est = "-" if r["alpha_star"] is None else f"{r['alpha_star']:.3e}"
            print(f"{r['step']:>5} {r['lr']:>10.3e} {est:>10} {r['fallback'] or '':>10}")


if __name__ == "__main__":
    main(sys.argv[1:])
