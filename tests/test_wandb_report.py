"""`scripts/wandb_report.py` on real offline W&B runs: `scripts/run_clm.py` runs briefly with ``WANDB_MODE=offline``
and ``--report_to wandb``, once with GeN and once with a cosine schedule (the run GeN replaces), next to a plain W&B
run; the report's spec is built from their run folders without a server, checked against what the runs logged (the
Trainer's log history, the arguments it saved, the run folders' ids) and validated back into the
``wandb_workspaces`` model. Saving without a server must fail in one ``error:`` line with exit status 2."""

import json
import os
import socket
import subprocess
import sys
import warnings
from dataclasses import fields
from pathlib import Path

import pytest

import wandb_report

REPO = Path(__file__).resolve().parents[1]

PROJECT = "hfgen-report-test"
STEPS = 6
GEN_KEYS = ["train/gen/lr", "train/learning_rate", "train/gen/alpha_star", "train/gen/fallbacks"]
LOSS_KEYS = ["train/loss", "eval/loss"]
# A plain W&B run: a config record longer than a 32 KiB block of the log, and eval keys of a classifier.
WRITER = """import wandb
run = wandb.init(name="writer", config={"blob": "x" * 70000, "gen_interval": 3})
for step in range(3):
    run.log({"train/loss": 1 / (step + 1), "eval/accuracy": 0.5 + step / 10, "eval/runtime": 0.1})
run.finish()
"""


def offline_env(wandb_dir: Path, group: str, tags: str) -> dict:
    wandb_dir.mkdir(parents=True)
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(wandb_dir), "WANDB_SILENT": "true",
           "WANDB_PROJECT": PROJECT, "WANDB_RUN_GROUP": group, "WANDB_TAGS": tags, "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
    return env


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three real offline runs, started together: a GPT-2 (width 16, one layer) trained from its config for 6 steps
    with GeN and with a cosine schedule (group ``cmp``), and the plain W&B run above (group ``other``)."""
    root = tmp_path_factory.mktemp("wandb_report")
    text = (REPO / "scripts" / "run_clm.py").read_text()
    (root / "train.txt").write_text(text[:8000])
    (root / "valid.txt").write_text(text[8000:10000])
    clm = [sys.executable, str(REPO / "scripts" / "run_clm.py"), "--model_type", "gpt2",
           "--config_overrides", "n_embd=16,n_layer=1,n_head=2,n_positions=32", "--block_size", "32",
           "--bpe_vocab_size", "300", "--train_file", str(root / "train.txt"),
           "--validation_file", str(root / "valid.txt"), "--per_device_train_batch_size", "4",
           "--learning_rate", "1e-2", "--max_steps", str(STEPS), "--logging_steps", "1", "--gen_interval", "2",
           "--save_strategy", "no", "--seed", "0", "--report_to", "wandb"]  # fmt: skip
    jobs = {
        "clm-gen": (clm + ["--lr_scheduler", "gen", "--gen_gamma", "0.5"], "cmp", "hf-gen,clm"),
        "clm-cosine": (clm + ["--lr_scheduler_type", "cosine"], "cmp", "baseline,clm"),
    }
    procs = {}
    for name, (argv, group, tags) in jobs.items():
        argv = argv + ["--output_dir", str(root / "out" / name), "--run_name", name]
        env = offline_env(root / "wb" / name, group, tags)
        procs[name] = subprocess.Popen(argv, env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    env = offline_env(root / "wb" / "writer", "other", "writer")
    procs["writer"] = subprocess.Popen([sys.executable, "-c", WRITER], env=env, cwd=root, stderr=subprocess.PIPE)
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, f"{name}: {err.decode()[-3000:]}"
    return root


def wandb_dir(runs: Path, name: str) -> Path:
    return runs / "wb" / name


def run_folder(runs: Path, name: str) -> Path:
    (folder,) = (wandb_dir(runs, name) / "wandb").glob("offline-run-*")
    return folder


def run_id(runs: Path, name: str) -> str:
    return run_folder(runs, name).name.rsplit("-", 1)[1]  # offline-run-DATE_TIME-ID


def dry_run(tmp_path, *argv) -> dict:
    path = tmp_path / "spec.json"
    assert wandb_report.main(["--entity", "hfgen-team", *argv, "--dry_run", str(path)]) == 0
    return json.loads(path.read_text())


def panel_grids(spec: dict) -> list[dict]:
    return [b for b in spec["report"]["spec"]["blocks"] if b["type"] == "panel-grid"]


def panels(spec: dict) -> list[dict]:
    return [p for grid in panel_grids(spec) for p in grid["metadata"]["panelBankSectionConfig"]["panels"]]


def line_plots(spec: dict) -> dict[str, list[str]]:
    """``{title: y keys}`` of the report's line plots."""
    return {p["config"]["chartTitle"]: p["config"]["metrics"] for p in panels(spec) if "Line Plot" in p["viewType"]}


def markdown(spec: dict) -> str:
    return "\n".join(b["content"] for b in spec["report"]["spec"]["blocks"] if b["type"] == "markdown-block")


def without_empty_comments(node):
    """``node`` less the empty ``inlineComments`` lists the model layer adds to text nodes when it reads them."""
    if isinstance(node, dict):
        return {k: without_empty_comments(v) for k, v in node.items() if not (k == "inlineComments" and v == [])}
    if isinstance(node, list):
        return [without_empty_comments(v) for v in node]
    return node


def round_trip(spec: dict):
    """The spec validated back into the wandb_workspaces model (every block as its own type: a block that does not
    validate only warns there, so warnings are errors here) and dumped again unchanged, then read into the public
    Report objects."""
    import wandb_workspaces.reports.v2 as wr
    from wandb_workspaces.reports.v2 import internal

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = internal.ReportViewspec.model_validate(spec["report"])
    assert without_empty_comments(model.model_dump(mode="json", by_alias=True, exclude_none=True)) == spec["report"]
    report = wr.Report._from_model(model)
    assert (report.entity, report.project, report.title) == ("hfgen-team", spec["project"], spec["title"])
    kinds = [type(b).__name__ for b in report.blocks]
    assert kinds[:5] == ["H2", "MarkdownBlock", "H2", "MarkdownBlock", "H2"] and "PanelGrid" in kinds
    return report


def test_offline_runs_are_read_as_the_trainer_logged_them(runs):
    """Names, ids, groups, tags, config and logged keys from the run folders, checked against the run folders'
    names, the Trainer's log history and the arguments it saved."""
    import torch

    with pytest.raises(wandb_report.UsageError, match="no W&B run log"):  # not searched recursively
        wandb_report.find_offline_runs([str(runs / "wb")])  # a folder of WANDB_DIRs
    found = {r.name: r for r in wandb_report.find_offline_runs([str(p) for p in sorted((runs / "wb").iterdir())])}
    assert sorted(found) == ["clm-cosine", "clm-gen", "writer"]
    for name in ("clm-gen", "clm-cosine"):
        run = found[name]
        assert (run.id, run.project, run.group) == (run_id(runs, name), PROJECT, "cmp")
        state = json.loads((runs / "out" / name / "trainer_state.json").read_text())
        logged = {f"{'eval' if k.startswith('eval_') else 'train'}/{k.removeprefix('eval_')}"
                  for h in state["log_history"] for k in h if k not in ("step", "epoch", "total_flos")
                  and not k.startswith("train_")}  # fmt: skip
        assert logged <= run.history_keys, logged - run.history_keys
        args = torch.load(runs / "out" / name / "training_args.bin", weights_only=False)
        gen = [f.name for f in fields(args) if f.name.startswith("gen_")]
        assert len(gen) > 10 and [k for k in run.config if k.startswith("gen_")] == gen
        for key in gen + ["learning_rate", "lr_scheduler_type"]:
            expected = getattr(args, key)
            expected = list(expected) if isinstance(expected, tuple) else getattr(expected, "value", expected)
            assert run.config[key] == expected, key
    gen_run, cosine_run = found["clm-gen"], found["clm-cosine"]
    assert gen_run.tags == ["hf-gen", "clm"] and gen_run.config["gen_gamma"] == 0.5
    assert gen_run.is_gen and not cosine_run.is_gen and cosine_run.config["lr_scheduler_type"] == "cosine"
    assert set(GEN_KEYS) <= gen_run.history_keys and "train/gen/lr" not in cosine_run.history_keys
    writer = found["writer"]
    assert (writer.group, writer.tags, writer.id) == ("other", ["writer"], run_id(runs, "writer"))
    assert writer.config["blob"] == "x" * 70000 and writer.config["gen_interval"] == 3  # spans 3 blocks
    assert {"train/loss", "eval/accuracy", "eval/runtime"} <= writer.history_keys and not writer.is_gen


def test_dry_run_spec_compares_the_gen_run_with_the_cosine_run(runs, tmp_path, capsys):
    dirs = [str(wandb_dir(runs, n)) for n in ("clm-gen", "clm-cosine", "writer")]
    spec = dry_run(tmp_path, "--from_offline", *dirs, "--group", "cmp")
    assert "wrote the report's spec to" in capsys.readouterr().out
    ids = sorted(run_id(runs, n) for n in ("clm-gen", "clm-cosine"))
    assert spec["project"] == PROJECT  # from the runs
    assert sorted(r["id"] for r in spec["runs"]) == ids
    assert sorted(r["name"] for r in spec["runs"]) == ["clm-cosine", "clm-gen"]

    # Every run set picks exactly the two runs of group cmp, by id (what wandb sync keeps), and names them.
    grids = panel_grids(spec)
    assert len(grids) == 2
    for grid in grids:
        (runset,) = grid["metadata"]["runSets"]
        assert runset["project"] == {"entityName": "hfgen-team", "name": PROJECT}  # no id: only a server has it
        (condition,) = runset["filters"]["filters"]
        assert condition["key"] == {"section": "run", "name": "name"} and condition["op"] == "IN"  # run id
        assert sorted(condition["value"]) == ids
        assert set(runset["name"].split(" / ")) == {"clm-gen", "clm-cosine"}
    assert run_id(runs, "writer") not in json.dumps(spec["report"])
    assert any("project.id" in line for line in spec["resolved_on_save"])

    # The GeN lr and the Trainer's lr share one chart; the rest have one each (a causal LM logs no task metric).
    plots = line_plots(spec)
    assert ["train/gen/lr", "train/learning_rate"] in plots.values()
    assert sorted(y for keys in plots.values() for y in keys) == sorted(GEN_KEYS + LOSS_KEYS)
    assert all(p["config"]["xAxis"] == "train/global_step" for p in panels(spec) if "Line Plot" in p["viewType"])

    # Settings: the table lists every gen_* key of the GeN run's config with its value, per run.
    (gen_run,) = wandb_report.find_offline_runs([dirs[0]])
    gen_keys = [k for k in gen_run.config if k.startswith("gen_")]
    assert len(gen_keys) > 10 and spec["settings_keys"][-len(gen_keys) :] == gen_keys
    text = markdown(spec)
    table = {line.split(" | ")[0].strip("| `"): line for line in text.splitlines() if line.startswith("| `")}
    assert set(gen_keys) | {"learning_rate", "lr_scheduler_type"} <= set(table)
    assert table["lr_scheduler_type"].count('`"gen"`') == 1 and '`"cosine"`' in table["lr_scheduler_type"]
    assert "`0.5`" in table["gen_gamma"] and table["learning_rate"].count("`0.01`") == 2
    kinds = [p["viewType"] for p in panels(spec)]
    assert "Run Comparer" in kinds and "Parallel Coordinates Plot" in kinds
    pinned = grids[1]["metadata"]["runSets"][0]["runFeed"]["columnPinned"]
    assert {f"config:{k}.value" for k in gen_keys} <= set(pinned)

    # The text: what GeN is and how to read the panels.
    assert "arXiv:2407.02772" in text and "parabola" in text and "`train/gen/fallbacks`" in text

    report = round_trip(spec)
    grid = next(b for b in report.blocks if type(b).__name__ == "PanelGrid")
    assert grid.runsets[0].entity == "hfgen-team" and all(i in grid.runsets[0].filters for i in ids)
    assert [m.name for m in grid.panels[0].y] == ["train/gen/lr", "train/learning_rate"]

    # A tag narrows the offline runs too.
    spec = dry_run(tmp_path, "--from_offline", *dirs, "--tag", "hf-gen")
    assert [r["name"] for r in spec["runs"]] == ["clm-gen"]


def test_dry_run_by_name_group_and_tag_without_offline_runs(tmp_path):
    spec = dry_run(tmp_path, "--project", PROJECT, "--runs", "clm-gen", "clm-cosine", "--group", "cmp",
                   "--tag", "clm", "--eval_metrics", "accuracy", "eval_f1_macro")  # fmt: skip
    (runset,) = panel_grids(spec)[0]["metadata"]["runSets"]
    conditions = {c["key"]["name"]: (c["op"], c["value"]) for c in runset["filters"]["filters"]}
    assert conditions["displayName"][0] == "IN" and sorted(conditions["displayName"][1]) == ["clm-cosine", "clm-gen"]
    assert conditions["group"] == ("=", "cmp") and conditions["tags"] == ("IN", ["clm"])
    assert sorted(y for ys in line_plots(spec).values() for y in ys) == sorted(
        GEN_KEYS + LOSS_KEYS + ["eval/accuracy", "eval/f1_macro"]
    )
    # No config to read: the settings are every gen_* field of GeNTrainingArguments, as pinned runs-table columns.
    from hf_gen import GeNTrainingArguments

    gen = [f.name for f in fields(GeNTrainingArguments) if f.name.startswith("gen_")]
    assert spec["settings_keys"] == ["lr_scheduler_type", "lr_scheduler", "learning_rate", *gen]
    assert "| setting |" not in markdown(spec)
    round_trip(spec)


def test_task_metrics_found_in_a_run_get_panels(runs, tmp_path, capsys):
    spec = dry_run(tmp_path, "--from_offline", str(run_folder(runs, "writer")), "--project", "elsewhere")
    assert "none of the offline runs used GeN" in capsys.readouterr().out
    ys = sorted(y for keys in line_plots(spec).values() for y in keys)
    assert ys == sorted(GEN_KEYS + LOSS_KEYS + ["eval/accuracy"])  # not eval/runtime
    assert spec["project"] == "elsewhere" and spec["settings_keys"] == ["gen_interval"]
    round_trip(spec)


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: ") and sum(line.startswith("error: ") for line in lines) == 1
    return lines[-1]


def test_bad_input_fails_in_one_line_and_writes_nothing(runs, tmp_path, capsys):
    spec = ["--dry_run", str(tmp_path / "spec.json")]
    assert wandb_report.main(["--entity", "e", "--project", "p", *spec]) == 2
    assert "no runs chosen" in one_error_line(capsys.readouterr().err)
    assert wandb_report.main(["--entity", "e", "--from_offline", str(tmp_path / "nope"), *spec]) == 2
    assert "nope: no such folder" in one_error_line(capsys.readouterr().err)
    assert wandb_report.main(["--entity", "e", "--from_offline", str(wandb_dir(runs, "writer")), "--group", "cmp",
                              *spec]) == 2  # fmt: skip
    line = one_error_line(capsys.readouterr().err)
    assert "no offline run matches group cmp" in line and "writer (group other, tags writer)" in line
    assert not (tmp_path / "spec.json").exists()


def test_saving_without_a_server_fails_in_one_line(runs, tmp_path, capsys, monkeypatch):
    argv = ["--entity", "e", "--from_offline", str(wandb_dir(runs, "clm-gen")), "--timeout", "5"]
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_report.main(argv) == 2
    out, err = capsys.readouterr()
    line = one_error_line(err)
    assert "offline mode" in line and "wandb login" in line and "--dry_run" in line and not out

    # A server address where nothing listens (a port just freed), from the command line: refused at once.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "WANDB_MODE": "online", "WANDB_BASE_URL": f"http://127.0.0.1:{port}", "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "wandb_report.py"), *argv], env=env,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2
    line = one_error_line(result.stderr)
    assert f"no W&B server reachable at http://127.0.0.1:{port}" in line
    assert "wandb login" in line and "WANDB_BASE_URL" in line and "--dry_run" in line
    assert "http" not in result.stdout and "Saved" not in result.stdout + result.stderr
