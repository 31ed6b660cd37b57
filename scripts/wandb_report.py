"""Build a W&B report that compares GeN runs with the stock-schedule runs they replace.

Usage:
    python scripts/wandb_report.py --entity E --project P (--runs NAME ... | --group G | --tag T ... |
        --from_offline DIR ...) [--eval_metrics eval/accuracy ...] [--title TITLE] [--dry_run SPEC.json]

The runs are the ones the fine-tune scripts logged with ``--report_to wandb``, for example a GeN run and the
``--lr_scheduler_type cosine`` run of the same job. Pick them by display name (``--runs``, the scripts'
``--run_name``), by W&B group (``--group``, ``WANDB_RUN_GROUP`` at training time) or by tag (``--tag``: runs with any
of the tags, ``WANDB_TAGS``); given together, a run must match each. ``--from_offline`` reads local W&B run folders
(``WANDB_DIR``, ``WANDB_DIR/wandb`` or one ``offline-run-*`` folder, as written with ``WANDB_MODE=offline``): the
report then selects those runs by id (``wandb sync`` keeps it; ``--runs``, ``--group`` and ``--tag`` narrow them),
its settings table lists their ``gen_*`` config values, its panels add the eval metrics they logged, and
``--project`` defaults to theirs.

The report holds: what GeN is and how to read the panels; the GeN lr (``train/gen/lr``) next to the lr the Trainer
logs (``train/learning_rate``: a stock run's schedule) on one chart; the raw estimate (``train/gen/alpha_star``),
fallbacks (``train/gen/fallbacks``), training loss, eval loss and task metrics (``--eval_metrics``, or the
``eval/*`` keys found offline), one line per run; and the settings (``learning_rate``, ``lr_scheduler_type``,
``gen_*``) as a table, pinned columns of the runs table, a run comparer and a parallel-coordinates plot.

Saving needs a W&B server and a login (``wandb login``; ``WANDB_BASE_URL`` for your own server), and the runs synced
there (``wandb sync WANDB_DIR/wandb/offline-run-*``): it prints the report's URL. Without a server it stops with one
``error:`` line and exit status 2, as it does for ``WANDB_MODE=offline``. ``--dry_run PATH`` saves nothing and needs
no server: it writes the report's full spec (the ``wandb_workspaces`` ReportViewspec, JSON) to PATH. Two things
exist only on the server and are left out there, as the spec's ``resolved_on_save`` says: each run set's project id
(looked up when saving; it fails if the project does not exist yet) and the report's id and URL.
"""

from __future__ import annotations

import argparse
import copy
import json
import socket
import struct
import sys
import threading
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from urllib.parse import urlparse

LR_KEYS = ["train/gen/lr", "train/learning_rate"]
ALPHA_KEY = "train/gen/alpha_star"
FALLBACKS_KEY = "train/gen/fallbacks"
TRAIN_LOSS_KEY = "train/loss"
EVAL_LOSS_KEY = "eval/loss"
STEP_KEY = "train/global_step"
# Run-wide settings shown next to the gen_* ones.
BASE_SETTINGS = ["lr_scheduler_type", "lr_scheduler", "learning_rate"]
# Logged under eval/ by every evaluation, but not task metrics.
EVAL_BOOKKEEPING = ("runtime", "samples_per_second", "steps_per_second", "model_preparation_time", "epoch")
# Axes of the parallel-coordinates plot (the full list is in the table and the runs table).
PARALLEL_SETTINGS = ("lr_scheduler_type", "learning_rate", "gen_interval", "gen_gamma", "gen_max_change", "gen_lr_max")
# Saving takes several requests (project lookups, the upsert): it may take this many times --timeout.
SAVE_DEADLINE_FACTOR = 12
OFFLINE_MODES = ("offline", "dryrun", "disabled")
RESOLVED_ON_SAVE = [
    "report.spec.blocks[].metadata.runSets[].project.id: the project's internal id, looked up on the server by "
    "Report.save(); saving fails if the project does not exist there yet (sync the runs first)",
    "report.id and the report's URL: assigned by the server when the report is saved",
]

GEN_TEXT = (
    "**GeN** (the generalized Newton's method; Bu & Xu, "
    "[arXiv:2407.02772](https://arxiv.org/abs/2407.02772)) chooses the learning rate from the loss itself. Along the "
    "optimizer's update line, `theta - a d` (`d`: the step the optimizer takes per unit lr), it fits a parabola to "
    "the loss `g(a) = L(theta - a d)` and takes its minimiser, `a* = <grad L, d> / (d^T H d)`, as the lr. The "
    "approximate mode (hf-gen's default) fits the parabola from the loss on the line, out of sample: by default "
    "the line through the mean weights of the last two windows of steps, measured on the batch after them "
    "(`gen_probe_batch`), whose minimiser says by what factor those steps should have been longer. Estimates are "
    "smoothed (`gen_gamma`) and bounded (`gen_max_change`, `gen_lr_min`, `gen_lr_max`). The runs "
    "with a stock schedule (`--lr_scheduler_type cosine`, ...) are the same job with the lr GeN replaces."
)
READING_TEXT = (
    "- **Learning rate.** `train/gen/lr` (GeN runs only) is the lr GeN set at its latest update. "
    "`train/learning_rate` is the lr the Trainer logs at every logging step: for a stock run its schedule, for a "
    "GeN run the lr in use (GeN's level, times the `gen_decay` shape where one is set, which then keeps moving "
    "between updates; with the default window lines there is none). Where the "
    "GeN lines sit above or below the schedule is where GeN steps further or shorter than the run it replaces.\n"
    "- **Raw estimate.** `train/gen/alpha_star` is the parabola's minimiser before smoothing and bounds. Far from the "
    "lr, the bounds are doing the work; gaps are updates whose estimate was undefined (for example non-positive "
    "curvature).\n"
    "- **Fallbacks.** `train/gen/fallbacks` counts, cumulatively, the updates whose estimate was unusable (handled "
    "as `gen_fallback` says) or outside `gen_lr_min`/`gen_lr_max` (replaced by the bound). Flat at 0 is the normal "
    "case; a steady climb means the lr is set by these rules, not by the fit.\n"
    "- **Losses and metrics.** `train/loss`, `eval/loss` and the task metrics, one line per run, against the "
    "Trainer's step (`train/global_step`): the comparison that decides whether GeN's lr was the better one.\n"
    "- **Settings.** The table and the runs table list `learning_rate` (GeN's starting lr and first probe radius), "
    "`lr_scheduler_type` and the `gen_*` settings; `gen_*` act only where `lr_scheduler_type` is `gen`. The run "
    "comparer shows every config difference."
)


class UsageError(Exception):
    """Bad input or no server: the message says in one line what was wrong and what to do."""


def one_line(text) -> str:
    return " ".join(str(text).split())


def shorten(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---- offline run folders ------------------------------------------------------------------------------------------

LOG_BLOCK = 32768
LOG_HEADER = 7  # crc32c (4 bytes), length (2), chunk type (1)
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: Path) -> list:
    """The protobuf records of a ``.wandb`` transaction log. The file is a 7-byte header (``:W&B``, version) and
    32 KiB blocks of chunks, each with a 7-byte header; a record spans one chunk (full) or several (first, middle...,
    last), and a block's last 6 bytes or fewer are padding. A truncated tail (a run still writing, or killed) ends
    the list."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise UsageError(f"{path}: not a W&B run log (no :W&B header); pass a folder written by a W&B run")
    records, pending, pos = [], None, LOG_HEADER
    while pos + LOG_HEADER <= len(data):
        left_in_block = LOG_BLOCK - pos % LOG_BLOCK
        if left_in_block < LOG_HEADER:
            pos += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + LOG_HEADER])
        chunk = data[pos + LOG_HEADER : pos + LOG_HEADER + length]
        if kind == 0 or len(chunk) < length:
            break
        pos += LOG_HEADER + length
        if kind == FULL:
            records.append(chunk)
        elif kind == FIRST:
            pending = chunk
        elif kind in (MIDDLE, LAST) and pending is not None:
            pending += chunk
            if kind == LAST:
                records.append(pending)
                pending = None
    try:
        return [wandb_internal_pb2.Record.FromString(r) for r in records]
    except Exception as err:  # protobuf's DecodeError
        raise UsageError(f"{path}: a damaged record ({one_line(err)}); pass the folder of an intact W&B run") from None


def item_key(item) -> str:
    """A history/summary/config item's key: ``key``, or ``nested_key`` joined by '/' (how ``train/loss`` is kept)."""
    return item.key or "/".join(item.nested_key)


@dataclass
class OfflineRun:
    id: str
    name: str
    project: str
    group: str
    tags: list[str]
    folder: str
    config: dict = field(default_factory=dict)
    history_keys: set[str] = field(default_factory=set)

    @property
    def is_gen(self) -> bool:
        return self.config.get("lr_scheduler_type") == "gen" or LR_KEYS[0] in self.history_keys

    def describe(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "project": self.project,
            "group": self.group,
            "tags": self.tags,
            "gen": self.is_gen,
            "folder": self.folder,
        }


def read_offline_run(log: Path) -> OfflineRun | None:
    """Name, id, project, group, tags, config and logged keys of one run, or None if its log has no run record."""
    run = None
    config, keys = {}, set()
    for record in read_records(log):
        kind = record.WhichOneof("record_type")
        if kind == "run" and run is None:
            r = record.run
            run = OfflineRun(r.run_id, r.display_name, r.project, r.run_group, list(r.tags), str(log.parent))
            updates = r.config.update
        elif kind == "config":
            updates = record.config.update
        elif kind == "history":
            keys.update(item_key(item) for item in record.history.item)
            continue
        else:
            continue
        for item in updates:
            key = item_key(item)
            if not key.startswith("_"):
                config[key] = json.loads(item.value_json)
    if run is not None:
        run.config, run.history_keys = config, keys
    return run


def find_offline_runs(paths: list[str]) -> list[OfflineRun]:
    """The runs in ``paths``: each an offline run folder, a folder of them (``WANDB_DIR/wandb``) or ``WANDB_DIR``."""
    runs: dict[str, OfflineRun] = {}
    for given in paths:
        path = Path(given)
        if not path.is_dir():
            raise UsageError(
                f"--from_offline {given}: no such folder; pass WANDB_DIR, WANDB_DIR/wandb or a run folder"
            )
        logs = {
            p.resolve()
            for pattern in ("run-*.wandb", "*run-*/run-*.wandb", "wandb/*run-*/run-*.wandb")
            for p in path.glob(pattern)
        }
        found = [run for log in sorted(logs) if (run := read_offline_run(log)) is not None]
        if not found:
            raise UsageError(
                f"--from_offline {given}: no W&B run log (run-*.wandb) in it, in its offline-run-* folders or in "
                "its wandb/ folder; pass the WANDB_DIR of a run with --report_to wandb"
            )
        for run in found:
            runs.setdefault(run.id, run)
    return list(runs.values())


def narrow_offline_runs(runs: list[OfflineRun], names, group, tags) -> list[OfflineRun]:
    picked = [
        r
        for r in runs
        if (not names or r.name in names) and (not group or r.group == group) and (not tags or set(tags) & set(r.tags))
    ]
    if not picked:
        wanted = ", ".join(
            part
            for part in (
                f"names {', '.join(names)}" if names else "",
                f"group {group}" if group else "",
                f"tags {', '.join(tags)}" if tags else "",
            )
            if part
        )
        there = "; ".join(f"{r.name} (group {r.group or '-'}, tags {', '.join(r.tags) or '-'})" for r in runs)
        raise UsageError(f"no offline run matches {wanted}; the offline runs are: {there}")
    return picked


# ---- what goes into the report -----------------------------------------------------------------------------------


def eval_metric_keys(given: list[str] | None, runs: list[OfflineRun]) -> list[str]:
    """Task metrics: the ones given (``accuracy``, ``eval_accuracy`` or ``eval/accuracy``), else the ``eval/*``
    keys the offline runs logged, less the loss and the Trainer's timing keys."""
    if given:
        keys = []
        for name in given:
            base = name.removeprefix("eval/").removeprefix("eval_")
            keys.append(f"eval/{base}")
        return [k for k in dict.fromkeys(keys) if k != EVAL_LOSS_KEY]
    found = {k for run in runs for k in run.history_keys if k.startswith("eval/")}
    return sorted(k for k in found if k != EVAL_LOSS_KEY and not k.endswith(EVAL_BOOKKEEPING))


def default_gen_settings() -> list[str]:
    """Every ``gen_*`` field of ``GeNTrainingArguments`` (when no offline config says which were logged)."""
    from dataclasses import fields

    from hf_gen import GeNTrainingArguments

    return [f.name for f in fields(GeNTrainingArguments) if f.name.startswith("gen_")]


def settings_keys(runs: list[OfflineRun]) -> list[str]:
    if runs:
        gen = [k for run in runs for k in run.config if k.startswith("gen_")]
        base = [k for k in BASE_SETTINGS if any(k in run.config for run in runs)]
    else:
        gen, base = default_gen_settings(), list(BASE_SETTINGS)
    return base + list(dict.fromkeys(gen))


def run_filters(names, group, tags, ids):
    """The run set's filter, built from the library's own filter expressions (each condition must hold)."""
    from wandb_workspaces import expr

    conditions = []
    if ids:
        conditions.append(expr.Metric("ID").isin(list(ids)))
    else:
        if names:
            conditions.append(expr.Metric("Name").isin(list(names)))
        if group:
            conditions.append(expr.Metric("Group") == group)
        if tags:
            conditions.append(expr.Tags().isin(list(tags)))
    return expr.And(*conditions)


def settings_table(runs: list[OfflineRun], keys: list[str]) -> str:
    def cell(run, key):
        if key not in run.config:
            return "-"
        return "`" + json.dumps(run.config[key]).replace("|", "\\|") + "`"

    head = "| setting | " + " | ".join(f"{r.name} (`{r.id}`)" for r in runs) + " |"
    rule = "|---|" + "---|" * len(runs)
    rows = [f"| `{k}` | " + " | ".join(cell(r, k) for r in runs) + " |" for k in keys]
    return "\n".join([head, rule, *rows])


def build_report(
    entity: str,
    project: str,
    title: str,
    filters,
    runset_name: str,
    metrics: list[str],
    settings: list[str],
    runs: list[OfflineRun],
):
    import wandb_workspaces.reports.v2 as wr

    def runset(**columns):
        return wr.Runset(entity=entity, project=project, name=runset_name, filters=filters, **columns)

    def line(title, y, at, size=(12, 6), **kwargs):
        layout = wr.Layout(x=at[0], y=at[1], w=size[0], h=size[1])
        return wr.LinePlot(title=title, x=STEP_KEY, y=y, title_x="step", layout=layout, **kwargs)

    lr_title = "Learning rate: GeN (train/gen/lr) vs. the Trainer's lr (train/learning_rate)"
    charts = [
        line(lr_title, LR_KEYS, (0, 0), (24, 8), title_y="lr"),
        line("GeN's raw estimate (train/gen/alpha_star)", [ALPHA_KEY], (0, 8), title_y="alpha*"),
        line("GeN fallbacks, cumulative (train/gen/fallbacks)", [FALLBACKS_KEY], (12, 8), title_y="fallbacks"),
        line("Training loss (train/loss)", [TRAIN_LOSS_KEY], (0, 14), title_y="loss"),
        line("Eval loss (eval/loss)", [EVAL_LOSS_KEY], (12, 14), title_y="loss"),
    ]
    for i, key in enumerate(metrics):
        name = key.removeprefix("eval/")
        charts.append(line(f"Eval {name} ({key})", [key], (12 * (i % 2), 20 + 6 * (i // 2)), title_y=name))

    columns = [f"config:{k}.value" for k in settings] + [f"summary:{k}" for k in [EVAL_LOSS_KEY, *metrics]]
    axes = [k for k in settings if k in PARALLEL_SETTINGS]
    coordinates = [wr.ParallelCoordinatesPlotColumn(metric=wr.Config(k)) for k in axes]
    coordinates += [wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric(k)) for k in [EVAL_LOSS_KEY, *metrics]]
    settings_panels = [
        wr.RunComparer(diff_only="split", layout=wr.Layout(x=0, y=0, w=12, h=10)),
        wr.ParallelCoordinatesPlot(
            title="Settings and final eval metrics", columns=coordinates, layout=wr.Layout(x=12, y=0, w=12, h=10)
        ),
    ]
    settings_blocks = [wr.H2("Settings")]
    if runs:
        settings_blocks.append(
            wr.MarkdownBlock(
                text="The runs' `learning_rate`, `lr_scheduler_type` and `gen_*` settings, read from their config "
                "(`gen_*` act only where `lr_scheduler_type` is `gen`):\n\n" + settings_table(runs, settings)
            )
        )
    settings_blocks.append(wr.PanelGrid(runsets=[runset(pinned_columns=columns)], panels=settings_panels))
    return wr.Report(
        entity=entity,
        project=project,
        title=title,
        description="GeN's lr, its raw estimate and fallbacks, losses and metrics next to the runs with a stock "
        "lr schedule; built by hf-gen's scripts/wandb_report.py.",
        width="fluid",
        blocks=[
            wr.H2("What GeN is"),
            wr.MarkdownBlock(text=GEN_TEXT),
            wr.H2("How to read the panels"),
            wr.MarkdownBlock(text=READING_TEXT),
            wr.H2("Learning rate, estimate, fallbacks, losses and metrics"),
            wr.PanelGrid(runsets=[runset()], panels=charts),
            *settings_blocks,
        ],
    )


# ---- writing and saving ------------------------------------------------------------------------------------------


def offline_viewspec(report) -> dict:
    """The report's ReportViewspec as JSON, built without a server: the same model ``Report.save()`` sends, less
    the run sets' project ids. ``Runset._to_model`` looks the id up on the server when a run set names its entity
    and project, so the run sets are serialised without them and get ``project: {entityName, name}`` back."""
    blank = copy.deepcopy(report)
    projects = []
    for block in blank.blocks:
        for runset in getattr(block, "runsets", []):
            projects.append({"entityName": runset.entity, "name": runset.project})
            runset.entity, runset.project = "", ""
    spec = blank._to_model().model_dump(mode="json", by_alias=True, exclude_none=True)
    runsets = [
        rs
        for block in spec["spec"]["blocks"]
        if block.get("type") == "panel-grid"
        for rs in block["metadata"]["runSets"]
    ]
    for runset, project in zip(runsets, projects, strict=True):
        runset["project"] = project
    return spec


def server_problem(url: str, timeout: float) -> str | None:
    """Why the server at ``url`` cannot be reached (name lookup and TCP connect, within ``timeout`` s), or None."""
    parts = urlparse(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"not an http(s) URL: {url!r}"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    outcome: list[str | None] = []

    def probe():
        try:
            socket.create_connection((parts.hostname, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as err:
            outcome.append(one_line(err) or type(err).__name__)

    worker = threading.Thread(target=probe, daemon=True)  # a name lookup does not honour socket timeouts
    worker.start()
    worker.join(timeout)
    return outcome[0] if outcome else f"no answer within {timeout:g} s"


def check_server(timeout: float) -> str:
    """The W&B server's URL, once it is known to be reachable and logged in to; otherwise a UsageError that says
    why. Runs before the report is built, so that a missing server fails fast."""
    from wandb.sdk import wandb_setup

    settings = wandb_setup.singleton().settings
    hint = "run `wandb login` (and set WANDB_BASE_URL for your own server), or pass --dry_run PATH to write the spec"
    if settings.mode in OFFLINE_MODES:
        raise UsageError(f"cannot save the report: W&B is in {settings.mode} mode (WANDB_MODE); unset it and {hint}")
    base = settings.base_url
    problem = server_problem(base, timeout)
    if problem:
        raise UsageError(f"cannot save the report: no W&B server reachable at {base} ({problem}); {hint}")
    from wandb.sdk.lib import wbauth

    auth = wbauth.authenticate_session(
        host=base, source="wandb_report.py", no_offline=True, prompt=False, update_session=False
    )
    if not auth:
        raise UsageError(f"cannot save the report: not logged in to {base}; {hint}")
    return base


def save_report(report, base: str, deadline: float) -> str:
    """Save to the server checked by ``check_server`` and return the report's URL. The save runs in a helper thread
    so that a server which accepts connections but never answers costs ``deadline`` seconds, not a hang."""
    failure: list[str] = []

    def save():
        try:
            report.save()
        except Exception as err:  # the library raises plain exceptions (project not found, GraphQL errors)
            failure.append(shorten(one_line(err)))

    worker = threading.Thread(target=save, daemon=True)
    worker.start()
    worker.join(deadline)
    if worker.is_alive():
        raise UsageError(
            f"saving the report to {base}: no answer within {deadline:g} s, so whether it was saved is unknown; "
            "check the server, or pass --dry_run PATH"
        )
    if failure:
        raise UsageError(
            f"saving the report to {base} failed: {failure[0]}; sync the runs first (wandb sync), check "
            "--entity/--project, or pass --dry_run PATH"
        )
    if not report.id:
        raise UsageError(f"saving the report to {base} returned no report id; nothing was saved")
    return report.url


# ---- command line ------------------------------------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entity", required=True, help="W&B entity (user or team) that owns the project")
    parser.add_argument("--project", help="W&B project of the runs (default: the offline runs' project)")
    parser.add_argument("--runs", nargs="+", metavar="NAME", help="run display names (the scripts' --run_name)")
    parser.add_argument("--group", help="W&B run group (WANDB_RUN_GROUP at training time)")
    parser.add_argument("--tag", nargs="+", metavar="TAG", help="runs with any of these tags (WANDB_TAGS)")
    parser.add_argument(
        "--from_offline",
        nargs="+",
        metavar="DIR",
        help="local W&B run folders: WANDB_DIR, WANDB_DIR/wandb or offline-run-* folders",
    )
    parser.add_argument(
        "--eval_metrics",
        nargs="+",
        metavar="KEY",
        help="task metrics to chart, e.g. eval/accuracy (default: eval/* found offline)",
    )
    parser.add_argument("--title", help="report title (at most 128 characters)")
    parser.add_argument("--dry_run", metavar="PATH", help="write the report's spec to PATH (JSON) and save nothing")
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help=f"seconds to wait for the server to answer (default 10); saving may take {SAVE_DEADLINE_FACTOR}x that",
    )
    return parser.parse_args(argv)


def run(argv: list[str]) -> None:
    args = parse(argv)
    if not (args.runs or args.group or args.tag or args.from_offline):
        raise UsageError("no runs chosen: pass --runs NAME ..., --group G, --tag T ... or --from_offline DIR ...")
    base = None if args.dry_run else check_server(args.timeout)
    offline = find_offline_runs(args.from_offline) if args.from_offline else []
    if offline:
        offline = narrow_offline_runs(offline, args.runs, args.group, args.tag)
    project = args.project
    if not project:
        projects = sorted({r.project for r in offline})
        if len(projects) != 1:
            where = f"the offline runs are in {', '.join(projects)}" if projects else "no offline runs to take it from"
            raise UsageError(f"pass --project ({where})")
        project = projects[0]
    title = args.title or f"GeN vs. stock lr schedules ({project})"
    if len(title) > 128:
        raise UsageError(f"--title has {len(title)} characters; W&B takes at most 128")
    if offline and not any(r.is_gen for r in offline):
        print("note: none of the offline runs used GeN (no lr_scheduler_type gen); the GeN panels stay empty")
    names = [r.name for r in offline] or list(args.runs or [])
    runset_name = " / ".join(names) if names and len(" / ".join(names)) <= 60 else "GeN and stock-schedule runs"
    filters = run_filters(args.runs, args.group, args.tag, [r.id for r in offline])
    metrics = eval_metric_keys(args.eval_metrics, offline)
    settings = settings_keys(offline)
    report = build_report(args.entity, project, title, filters, runset_name, metrics, settings, offline)

    if args.dry_run:
        spec = {
            "format": "wandb_workspaces.reports.v2 ReportViewspec (model_dump by_alias, camelCase) under 'report'",
            "built_with": {name: metadata.version(name) for name in ("wandb", "wandb-workspaces")},
            "entity": args.entity,
            "project": project,
            "title": title,
            "filters": next(b for b in report.blocks if hasattr(b, "runsets")).runsets[0].filters,
            "runs": [r.describe() for r in offline],
            "line_plot_keys": [*LR_KEYS, ALPHA_KEY, FALLBACKS_KEY, TRAIN_LOSS_KEY, EVAL_LOSS_KEY, *metrics],
            "settings_keys": settings,
            "resolved_on_save": RESOLVED_ON_SAVE,
            "report": offline_viewspec(report),
        }
        path = Path(args.dry_run)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(spec, indent=2) + "\n")
        print(f"wrote the report's spec to {path} (nothing saved; project ids and the URL come from the server)")
        return
    print(save_report(report, base, SAVE_DEADLINE_FACTOR * args.timeout))


def main(argv: list[str] | None = None) -> int:
    try:
        run(sys.argv[1:] if argv is None else list(argv))
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
