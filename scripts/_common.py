"""What `run_classification.py` and `run_clm.py` share: parsing with one-line errors, data files, the GeN model
card, the end-of-run summary and the completion marker.

A run is finished when ``output_dir/run_summary.json`` exists: it is written after the model, the trace picture and
the model card, and removed when a new run starts in the same folder. Bad input is refused before ``output_dir`` is
created.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import string
import sys
import time
from collections import Counter
from dataclasses import fields
from pathlib import Path

from transformers import HfArgumentParser

from hf_gen import GeNTrainer, GeNTrainingArguments
from hf_gen.trainer import TRACE_FILE

SUMMARY_FILE = "run_summary.json"
PICTURE_FILE = "lr_trace.png"
TEMPLATE_FILE = Path(__file__).resolve().parents[1] / "model_cards" / "TEMPLATE.md"
DATA_BUILDERS = {
    "csv": "csv",
    "tsv": "csv",
    "json": "json",
    "jsonl": "json",
    "parquet": "parquet",
    "txt": "text",
    "text": "text",
    "md": "text",
}
GEN_TAGS = ["hf-gen", "generalized-newton-lr"]


class UsageError(Exception):
    """Bad input: the message says in one line what was wrong and what to pass."""


def run_main(run, argv: list[str] | None) -> int:
    """Call ``run(argv)``; turn a ``UsageError`` into a one-line ``error: ...`` on stderr and exit status 2."""
    try:
        run(sys.argv[1:] if argv is None else list(argv))
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def given(argv: list[str], *options: str) -> bool:
    """Whether any of ``options`` (``--name``) appears in ``argv``, as ``--name value`` or ``--name=value``."""
    probe = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for option in options:
        probe.add_argument(option, option.replace("_", "-"), dest=option.lstrip("-"), default=None)
    known, _ = probe.parse_known_args(argv)
    return any(value is not None for value in vars(known).values())


def parse_arguments(types: tuple, argv: list[str], defaults: dict) -> tuple:
    """Parse ``argv`` into ``types`` (dataclasses, the last one ``GeNTrainingArguments``) over script ``defaults``.

    Argparse errors exit with status 2 and argparse's message; invalid values (an unknown scheduler name, a bad
    ``gen_*`` setting) raise ``UsageError``. ``--report_to a,b`` is split on commas.
    """
    parser = HfArgumentParser(types)
    parser.set_defaults(**defaults)
    try:
        parsed = parser.parse_args_into_dataclasses(args=argv)
    except ValueError as err:
        raise UsageError(one_line(err)) from None
    training_args = parsed[-1]
    training_args.report_to = [name for item in training_args.report_to for name in item.split(",") if name]
    if "none" in training_args.report_to:
        training_args.report_to = []
    return parsed


def check_files(files: dict[str, str | None]) -> None:
    """Each ``{option: path}`` must be an existing file of a kind ``datasets`` reads."""
    for option, path in files.items():
        if path is None:
            continue
        if not os.path.isfile(path):
            raise UsageError(f"{option} {path}: no such file; pass an existing csv, json, jsonl, parquet or text file")
        if builder_for(path) is None:
            raise UsageError(
                f"{option} {path}: unknown file type; pass a file ending in one of {', '.join(sorted(DATA_BUILDERS))}"
            )


def builder_for(path: str) -> str | None:
    return DATA_BUILDERS.get(Path(path).suffix.lower().lstrip("."))


def load_files(data_files: dict[str, list[str]], encoding: str | None = None, keep_linebreaks: bool = True):
    """Load local files with the ``datasets`` builder their extension names (all files must share one)."""
    from datasets import load_dataset

    builders = {builder_for(path) for paths in data_files.values() for path in paths}
    if len(builders) != 1:
        raise UsageError(f"data files of different kinds ({', '.join(sorted(builders))}): pass files of one kind")
    (builder,) = builders
    kwargs = {}
    if builder == "csv" and any(p.endswith(".tsv") for paths in data_files.values() for p in paths):
        kwargs["sep"] = "\t"
    if encoding and builder in ("csv", "json", "text"):
        kwargs["encoding"] = encoding
    if builder == "text":
        kwargs["keep_linebreaks"] = keep_linebreaks
    return load_dataset(builder, data_files=data_files, **kwargs)


def load_hub_dataset(name: str, config_name: str | None):
    """A dataset by Hub name (or a local dataset folder), with a one-line error when it cannot be had."""
    from datasets import load_dataset

    try:
        return load_dataset(name, config_name)
    except (FileNotFoundError, ConnectionError, ValueError) as err:
        raise UsageError(
            f"--dataset_name {name}: cannot load it ({one_line(err)[:200]}); pass a Hub dataset name (with Hub "
            f"access) or local files with --train_file/--validation_file"
        ) from None


def check_column(dataset, column: str, option: str) -> None:
    if column not in dataset.column_names:
        raise UsageError(
            f"{option} {column!r} is not a column of the data (columns: {', '.join(dataset.column_names)}); "
            f"pass {option} with one of those"
        )


def start_run(output_dir: str) -> float:
    """Called once the input is known to be good: a finished-run marker from an earlier run goes away."""
    marker = os.path.join(output_dir, SUMMARY_FILE)
    if os.path.exists(marker):
        os.remove(marker)
    return time.time()


def command_line(script: str, argv: list[str]) -> str:
    return shlex.join(["python", f"scripts/{script}", *argv])


def gen_settings(args: GeNTrainingArguments) -> dict:
    """The lr settings of the run: the scheduler, the starting lr and every ``gen_*`` field."""
    settings = {"lr_scheduler_type": args.lr_scheduler_type, "learning_rate": args.learning_rate}
    if args.uses_gen:
        settings.update({f.name: getattr(args, f.name) for f in fields(args) if f.name.startswith("gen_")})
    settings["optim"] = str(getattr(args.optim, "value", args.optim))
    settings["effective_batch_size"] = (
        args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)
    )
    return settings


def read_trace(output_dir: str) -> list[dict]:
    path = os.path.join(output_dir, TRACE_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def lr_report(args: GeNTrainingArguments, log_history: list[dict]) -> dict:
    """The lr range of the run: from the GeN trace with ``gen``, from the logged lr otherwise."""
    trace = read_trace(args.output_dir) if args.uses_gen else []
    if args.uses_gen:
        lrs = [args.learning_rate] + [r["lr"] for r in trace]
    else:
        lrs = [h["learning_rate"] for h in log_history if "learning_rate" in h]
    reasons = Counter(r["fallback"] for r in trace if r["fallback"])
    return {
        "lr_start": args.learning_rate,
        "lr_min": min(lrs) if lrs else None,
        "lr_max": max(lrs) if lrs else None,
        "lr_final": lrs[-1] if lrs else None,
        "gen_updates": len(trace),
        "gen_fallbacks": sum(reasons.values()),
        "gen_fallback_reasons": dict(reasons),
    }


class CardTrainer(GeNTrainer):
    """``GeNTrainer`` whose model card (``output_dir/README.md``, also what ``push_to_hub`` uploads) is the Trainer's
    card followed by the hf-gen section in ``card_section``."""

    card_section: str | None = None

    def create_model_card(self, *args, **kwargs) -> None:
        super().create_model_card(*args, **kwargs)
        if self.card_section and self.is_world_process_zero():
            with open(os.path.join(self.args.output_dir, "README.md"), "a", encoding="utf-8") as handle:
                handle.write("\n" + self.card_section)


def _table(rows: dict, header: tuple[str, str]) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += [f"| `{key}` | {_fmt(value)} |" for key, value in rows.items()]
    return "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def render_card_section(*, model: str, data: str, args, lr: dict, metrics: dict, command: str) -> str:
    """Fill ``model_cards/TEMPLATE.md`` (its leading HTML comment dropped)."""
    text = TEMPLATE_FILE.read_text(encoding="utf-8")
    if text.startswith("<!--"):
        text = text[text.index("-->") + 3 :].lstrip("\n")
    if args.uses_gen:
        trace = (
            f"GeN made {lr['gen_updates']} lr updates ({lr['gen_fallbacks']} fallbacks"
            + (
                f": {', '.join(f'{k} x{v}' for k, v in lr['gen_fallback_reasons'].items())}"
                if lr["gen_fallbacks"]
                else ""
            )
            + f"); the lr started at {_fmt(lr['lr_start'])}, ranged over [{_fmt(lr['lr_min'])}, {_fmt(lr['lr_max'])}]"
            f" and ended at {_fmt(lr['lr_final'])}. Every update is in `{TRACE_FILE}`."
        )
    else:
        trace = (
            f"The `{args.lr_scheduler_type}` schedule (a comparison run, not GeN) ran the lr over "
            f"[{_fmt(lr['lr_min'])}, {_fmt(lr['lr_max'])}]."
        )
    return string.Template(text).substitute(
        model=model,
        data=data,
        settings=_table(gen_settings(args), ("setting", "value")),
        trace_summary=trace,
        picture=PICTURE_FILE,
        metrics=_table(metrics, ("metric", "value")),
        command=command,
    )


def finish_run(
    trainer: CardTrainer,
    *,
    started: float,
    metrics: dict,
    command: str,
    model: str,
    data: str,
    card_kwargs: dict,
    extra: dict | None = None,
) -> dict:
    """Save the model and state, draw ``lr_trace.png``, write the card, then ``run_summary.json`` (last), push if
    asked, and print the summary."""
    from plot_lr_trace import plot_lr_trace

    args = trainer.args
    metrics = {k: v for k, v in metrics.items() if not k.endswith(("_runtime", "_per_second"))}
    trainer.save_model()
    trainer.save_state()
    lr = lr_report(args, trainer.state.log_history)
    summary = {
        "command": command,
        "wall_time_s": round(time.time() - started, 1),
        "metrics": metrics,
        **lr,
        **(extra or {}),
        "output_dir": args.output_dir,
    }
    if args.uses_gen:
        card_kwargs = {**card_kwargs, "tags": list(GEN_TAGS) + list(card_kwargs.get("tags", []))}
    trainer.card_section = render_card_section(
        model=model, data=data, args=args, lr=lr, metrics=metrics, command=command
    )
    if trainer.is_world_process_zero():
        plot_lr_trace(args.output_dir)
        trainer.create_model_card(**card_kwargs)
        with open(os.path.join(args.output_dir, SUMMARY_FILE), "w") as handle:
            json.dump(summary, handle, indent=2)
    if args.push_to_hub:
        trainer.push_to_hub(**card_kwargs)
    if "wandb" in args.report_to:
        import wandb

        if wandb.run is not None:
            wandb.finish()
    if trainer.is_world_process_zero():
        print_summary(summary, args)
    return summary


def print_summary(summary: dict, args) -> None:
    width = 78
    print("\n" + "=" * width)
    print("run summary")
    print("-" * width)
    for key, value in summary["metrics"].items():
        print(f"  {key:<34} {_fmt(value)}")
    if args.uses_gen:
        print(
            f"  lr (gen): start {summary['lr_start']:.3g}, range [{summary['lr_min']:.3g}, {summary['lr_max']:.3g}],"
            f" final {summary['lr_final']:.3g}"
        )
        print(f"  GeN updates {summary['gen_updates']}, fallbacks {summary['gen_fallbacks']}", end="")
        reasons = summary["gen_fallback_reasons"]
        print(f" ({', '.join(f'{k} x{v}' for k, v in reasons.items())})" if reasons else "")
    elif summary["lr_min"] is not None:
        print(f"  lr ({args.lr_scheduler_type}): range [{summary['lr_min']:.3g}, {summary['lr_max']:.3g}]")
    print(f"  wall time {summary['wall_time_s']:.0f} s")
    out = args.output_dir
    print(f"  outputs in {out}/: model, README.md (model card), {PICTURE_FILE}, {SUMMARY_FILE}", end="")
    print(f", {TRACE_FILE}" if args.uses_gen else "")
    if args.report_to:
        print(f"  reported to: {', '.join(args.report_to)}")
    print("=" * width)
