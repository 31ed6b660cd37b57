"""What `run_classification.py` and `run_clm.py` share: parsing with one-line errors, data files, the GeN model
card, the end-of-run summary and the completion marker.

A run is finished when ``output_dir/run_summary.json`` exists: it is written after the model, the trace picture and
the model card, and removed when a new run starts in the same folder. Bad input is refused before ``output_dir`` is
created.

Both scripts take their arguments as flags or as one JSON file (``python scripts/run_clm.py args.json``: an object
of flag names and values, read as the same flags over the same script defaults), seed everything with ``--seed``
before the model is built, and resume with ``--resume_from_checkpoint PATH`` (or ``True``: the newest complete
checkpoint in ``--output_dir``). A resumed run ends with the same trace, picture, card and summary as an
uninterrupted one, but for its wall time.
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
from dataclasses import dataclass, fields
from pathlib import Path

from transformers import HfArgumentParser, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from hf_gen import GeNTrainer, GeNTrainingArguments
from hf_gen.trace import TRACE_FILE, read_trace

SUMMARY_FILE = "run_summary.json"
PICTURE_FILE = "lr_trace.png"
CARD_FILE = "README.md"
STATE_FILE = "trainer_state.json"
CLOCK_FILE = "wall_time.json"
RESUME_OPTION = "--resume_from_checkpoint"
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


def exit_process(status: int) -> None:
    """End a script's process with ``status``. Under ``torchrun`` every rank first leaves the process group
    together, and the interpreter's teardown is skipped once everything is written and flushed: gloo's threads can
    abort that teardown ("terminate called without an active exception", seen about once in 15 launches on CPU),
    which would fail a run whose results are complete."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        sys.exit(status)
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def given(argv: list[str], *options: str) -> bool:
    """Whether any of ``options`` (``--name``) appears in ``argv``, as ``--name value`` or ``--name=value``."""
    probe = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for option in options:
        probe.add_argument(option, option.replace("_", "-"), dest=option.lstrip("-"), default=None)
    known, _ = probe.parse_known_args(argv)
    return any(value is not None for value in vars(known).values())


def json_argv(argv: list[str], types: tuple) -> list[str]:
    """``[ARGS.json]`` (one argument ending in ``.json``) becomes the command line it stands for, so the script's
    defaults, checks and recorded command treat it like flags: ``{"max_steps": 12, "gen_probe_offsets": [-1, 1],
    "use_cpu": true}`` is ``--max_steps=12 --gen_probe_offsets -1 1 --use_cpu=true``. ``null`` keeps the default.
    Any other ``argv`` is returned as it is."""
    if len(argv) != 1 or not argv[0].lower().endswith(".json"):
        return argv
    path = argv[0]
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file; pass a JSON file of arguments or the arguments as flags") from None
    except (OSError, ValueError) as err:
        raise UsageError(f"{path}: not readable JSON ({one_line(err)}); pass a JSON object of arguments") from None
    if not isinstance(data, dict):
        raise UsageError(
            f'{path}: holds a JSON {type(data).__name__}; pass a JSON object of arguments, e.g. {{"max_steps": 12}}'
        )
    nargs = {action.dest: action.nargs for action in HfArgumentParser(types)._actions}
    flags = []
    for key, value in data.items():
        if value is None:
            continue
        if isinstance(value, list) and nargs.get(key) in ("+", "*"):
            flags += [f"--{key}", *(_flag_value(v) for v in value)]
        elif isinstance(value, list):  # a comma-separated option such as report_to
            flags.append(f"--{key}=" + ",".join(_flag_value(v) for v in value))
        else:
            flags.append(f"--{key}={_flag_value(value)}")
    return flags


def _flag_value(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def resolve_checkpoint(value: str | None, output_dir: str) -> str | None:
    """The checkpoint folder ``--resume_from_checkpoint`` names: ``True`` is the newest complete ``checkpoint-N``
    in ``output_dir`` (one without ``trainer_state.json``, cut short by a killed run, is passed over); a path must
    be a complete checkpoint. ``None``/``False`` is no resume."""
    if value is None or value.strip().lower() in ("", "false", "no", "none"):
        return None
    if value.strip().lower() in ("true", "yes"):
        found = sorted(
            (p for p in Path(output_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*") if p.name.split("-")[-1].isdigit()),
            key=lambda p: int(p.name.split("-")[-1]),
            reverse=True,
        )
        complete = [p for p in found if (p / STATE_FILE).is_file()]
        if not complete:
            raise UsageError(
                f"{RESUME_OPTION} {value}: no complete {PREFIX_CHECKPOINT_DIR}-N folder in {output_dir}; pass a "
                f"checkpoint folder, or the --output_dir of a run that saved one (--save_strategy steps, --save_steps)"
            )
        if complete[0] != found[0]:
            print(f"note: {found[0]} is incomplete (no {STATE_FILE}); resuming from {complete[0]}", file=sys.stderr)
        return str(complete[0])
    if not os.path.isdir(value):
        raise UsageError(
            f"{RESUME_OPTION} {value}: no such checkpoint folder; pass a {PREFIX_CHECKPOINT_DIR}-N folder of an "
            f"earlier run, or True for the newest one in --output_dir"
        )
    if not os.path.isfile(os.path.join(value, STATE_FILE)):
        raise UsageError(
            f"{RESUME_OPTION} {value}: not a complete Trainer checkpoint (no {STATE_FILE}); pass a "
            f"{PREFIX_CHECKPOINT_DIR}-N folder that has one"
        )
    return value


def without_resume(argv: list[str]) -> list[str]:
    """``argv`` less ``--resume_from_checkpoint X``: the command that reproduces the run."""
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item in (RESUME_OPTION, RESUME_OPTION.replace("_", "-")):
            skip = True
        elif not item.startswith((RESUME_OPTION + "=", RESUME_OPTION.replace("_", "-") + "=")):
            out.append(item)
    return out


def whole_run_train_loss(train_result, checkpoint: str | None) -> float:
    """The mean training loss of the run. A resumed ``train()`` reports the mean over its own steps only; the
    steps before the checkpoint come back from the losses logged up to it (exact when the checkpoint's step was a
    logging step, as with ``save_steps`` a multiple of ``logging_steps``)."""
    if checkpoint is None:
        return train_result.training_loss
    with open(os.path.join(checkpoint, STATE_FILE)) as handle:
        state = json.load(handle)
    done = state["global_step"]
    earlier, logged = 0.0, 0
    for entry in state["log_history"]:
        if "loss" in entry and entry["step"] <= done:
            earlier += entry["loss"] * (entry["step"] - logged)
            logged = entry["step"]
    steps = train_result.global_step - done
    return (earlier + train_result.training_loss * steps) / max(logged + steps, 1)


class WallClock(TrainerCallback):
    """Counts the run's wall time across sessions: each checkpoint gets ``wall_time.json`` with the seconds of the
    sessions so far, and a run resumed from it starts from those."""

    def __init__(self, started: float, checkpoint: str | None = None):
        self.started = started
        self.earlier: list[float] = []
        clock = os.path.join(checkpoint, CLOCK_FILE) if checkpoint else None
        if clock and os.path.isfile(clock):
            with open(clock) as handle:
                self.earlier = list(json.load(handle)["sessions_s"])

    def sessions(self) -> list[float]:
        return [*self.earlier, round(time.time() - self.started, 1)]

    def on_save(self, args, state, control, **kwargs):
        folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        if state.is_world_process_zero and os.path.isdir(folder):
            with open(os.path.join(folder, CLOCK_FILE), "w") as handle:
                json.dump({"sessions_s": self.sessions()}, handle)


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
    """The command that reproduces the run (a resumed run's without its ``--resume_from_checkpoint``)."""
    return shlex.join(["python", f"scripts/{script}", *without_resume(argv)])


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


# The Trainer's card opens with one of these when it knows no Hub model the run started from.
TRAINER_ORIGINS = (
    "This model is a fine-tuned version of [](https://huggingface.co/) on ",
    "This model was trained from scratch on ",
)
HUB_TASK_NAMES = {"text-classification": "Text Classification", "text-generation": "Causal Language Modeling"}


@dataclass
class CardMetric:
    key: str  # in the run's final metrics
    type: str  # a Hub metric id (or "loss")
    name: str  # shown by the Hub
    args: dict | None = None


@dataclass
class CardFacts:
    """What the Hub reads off a run's card: the ``base_model`` (model tree), the ``datasets`` (dataset links) and
    the ``model-index`` results (evaluation widget), plus the sentence saying what the model was trained from."""

    task: str  # a Hub task id
    dataset_name: str  # shown by the Hub
    dataset_type: str  # the Hub dataset id, or a slug of the name for local data
    metrics: list[CardMetric]
    dataset_on_hub: bool = False  # only then does the card list it in `datasets`
    dataset_config: str | None = None
    dataset_split: str | None = None
    base_model: str | None = None  # the Hub model fine-tuned, if any
    origin: str | None = None  # without a Hub base model: "This model was trained from ..." (no trailing " on")

    @classmethod
    def for_data(cls, data_args, data_name: str, eval_split: str | None, **kwargs) -> CardFacts:
        """Facts with the dataset fields filled alike by both scripts: a Hub dataset (``--dataset_name`` that is not
        a local folder) is linked with its config and evaluation split; local data gets a slug of its name."""
        on_hub = data_args.dataset_name is not None and not os.path.exists(data_args.dataset_name)
        return cls(
            dataset_name=data_name,
            dataset_type=data_args.dataset_name if on_hub else slug(data_name),
            dataset_on_hub=on_hub,
            dataset_config=data_args.dataset_config_name if on_hub else None,
            dataset_split=eval_split if on_hub else None,
            **kwargs,
        )

    def trainer_kwargs(self, tags: list[str]) -> dict:
        return {
            "tasks": self.task,
            "finetuned_from": self.base_model,
            "dataset": self.dataset_name,
            "dataset_tags": self.dataset_type if self.dataset_on_hub else None,
            "tags": list(tags),
        }

    def apply(self, card, final_metrics: dict) -> None:
        """Set the metadata of ``card`` (a ``huggingface_hub.ModelCard``) and its opening sentence."""
        from huggingface_hub import EvalResult

        card.data.base_model = self.base_model
        card.data.datasets = [self.dataset_type] if self.dataset_on_hub else None
        card.data.metrics = [m.type for m in self.metrics if m.type != "loss"] or None
        card.data.eval_results = [
            EvalResult(
                task_type=self.task,
                task_name=HUB_TASK_NAMES.get(self.task),
                dataset_type=self.dataset_type,
                dataset_name=self.dataset_name,
                dataset_config=self.dataset_config,
                dataset_split=self.dataset_split,
                metric_type=m.type,
                metric_value=float(final_metrics[m.key]),
                metric_name=m.name,
                metric_args=m.args,
            )
            for m in self.metrics
            if m.key in final_metrics and math.isfinite(final_metrics[m.key])
        ] or None
        if self.base_model is None and self.origin:
            for start in TRAINER_ORIGINS:
                card.text = card.text.replace(start, self.origin + " on ", 1)


def slug(name: str) -> str:
    """A dataset-id-like name for local data: lower case, runs of other characters as one '-'."""
    return "-".join("".join(c if c.isalnum() else " " for c in name.lower()).split()) or "local-data"


class CardTrainer(GeNTrainer):
    """``GeNTrainer`` whose model card (``output_dir/README.md``, also what ``push_to_hub`` uploads) is the Trainer's
    card, its metadata completed from ``card_facts`` and ``card_metrics``, followed by the hf-gen section in
    ``card_section``."""

    card_section: str | None = None
    card_facts: CardFacts | None = None
    card_metrics: dict | None = None

    def create_model_card(self, *args, **kwargs) -> None:
        super().create_model_card(*args, **kwargs)
        if not self.is_world_process_zero():
            return
        path = os.path.join(self.args.output_dir, CARD_FILE)
        if self.card_facts is not None:
            from huggingface_hub import ModelCard

            card = ModelCard.load(path)
            self.card_facts.apply(card, self.card_metrics or {})
            card.save(path)
        if self.card_section:
            with open(path, "a", encoding="utf-8") as handle:
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
        if lr["gen_fallback_reasons"].get("lost_window"):
            trace += (
                " `lost_window`: a window whose training loss rose over the one before it was taken back (the weights"
                " returned to the earlier window's mean, and the lr halved for the rest of the run:"
                " `gen_undo_lost_windows`)."
            )
        if args.gen_tail_average > 0:
            trace += (
                f" The model is the mean of the trainable weights over the last {args.gen_tail_average:.0%} of the"
                " optimizer steps (`gen_tail_average`), and the final metrics are its."
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
    clock: WallClock,
    metrics: dict,
    command: str,
    model: str,
    data: str,
    card: CardFacts,
    extra: dict | None = None,
) -> dict:
    """Save the model and state, draw ``lr_trace.png``, write the card, then ``run_summary.json`` (last), push if
    asked, and print the summary. ``wall_time_s`` counts every session of a resumed run (up to the checkpoint it
    resumed from, then this one; ``wall_time_sessions_s`` lists them): the only entry in which a resumed run's
    summary differs from an uninterrupted one's."""
    from plot_lr_trace import plot_lr_trace

    args = trainer.args
    metrics = {k: v for k, v in metrics.items() if not k.endswith(("_runtime", "_per_second"))}
    trainer.save_model()
    trainer.save_state()
    lr = lr_report(args, trainer.state.log_history)
    sessions = clock.sessions()
    summary = {
        "command": command,
        "wall_time_s": round(sum(sessions), 1),
        "wall_time_sessions_s": sessions,
        "metrics": metrics,
        **lr,
        **(extra or {}),
        # how accelerate ran it ("NO", "MULTI_CPU", "MULTI_GPU", "FSDP", ...) and over how many processes
        "distributed_type": trainer.accelerator.distributed_type.value,
        "world_size": args.world_size,
        "output_dir": args.output_dir,
    }
    card_kwargs = card.trainer_kwargs(GEN_TAGS if args.uses_gen else [])
    trainer.card_facts, trainer.card_metrics = card, metrics
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
    sessions = summary["wall_time_sessions_s"]
    print(f"  wall time {summary['wall_time_s']:.0f} s" + (f", {len(sessions)} sessions" if len(sessions) > 1 else ""))
    out = args.output_dir
    print(f"  outputs in {out}/: model, README.md (model card), {PICTURE_FILE}, {SUMMARY_FILE}", end="")
    print(f", {TRACE_FILE}" if args.uses_gen else "")
    if args.report_to:
        print(f"  reported to: {', '.join(args.report_to)}")
    print("=" * width)
