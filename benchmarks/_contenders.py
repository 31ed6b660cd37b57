"""The contenders of the quality benchmark and how one run of one contender goes through the Hugging Face Trainer.

Every run uses the real ``Trainer`` (GeN: ``GeNTrainer``) with the same task, steps, batch size, sample order
(``Task.train_rows(seed)`` read in order), initial weights (``Task.model(seed)``), gradient clipping (the Trainer's
default ``max_grad_norm=1``) and no weight decay. What differs is only the lr method:

* ``adamw-linear`` / ``adamw-cosine`` / ``adamw-constant``: the Trainer's AdamW and its stock schedulers, no warmup.
* ``prodigy``, ``dadapt-adam``: ``prodigyopt.Prodigy`` and ``dadaptation.DAdaptAdam`` at their defaults (lr 1.0),
  passed as ``optimizers=(opt, None)`` with the constant scheduler.
* ``schedulefree-adamw``: the Trainer's ``optim="schedule_free_adamw"`` at the package's default lr 2.5e-3, no warmup
  (the Trainer switches its train/eval modes).
* ``mechanic``: ``mechanic_pytorch.mechanize(torch.optim.AdamW)(params, lr=1.0, weight_decay=0)`` (PyPI
  ``mechanic-pytorch`` 0.0.1): the package README's usage, ``lr=1.0`` for the base optimizer (its README: Mechanic's
  scale multiplies the base lr, which "you can set to anything"), and the tuner at its ``mechanize`` defaults
  (``s_decay=0.01``, the six ``betas`` 0.9 ... 0.999999, ``s_init=1e-8``, ``eps=1e-8``, ``store_delta=False``); the
  base AdamW at torch's betas and eps, weight decay 0 as for every contender; the constant scheduler. Its iterate is
  the initial weights plus ``sum(s)`` times the base AdamW's accumulated displacement, so the lr recorded for a step
  is the base lr times ``sum(s)`` as the step left it (the scale that step applied).
* ``dog``: ``dog.DoG(params)`` (PyPI ``dog-optimizer`` 1.0.3) at its defaults (``lr=1.0``, "changing it is not
  recommended"; ``reps_rel=1e-6``, the value its docstring suggests without batch normalisation; ``eps=1e-8``,
  ``weight_decay=0``), with the constant scheduler. Plain DoG, not LDoG: the package presents both without making
  LDoG the default for any model family. The package README says DoG "must be combined with iterate averaging" for
  best performance and a fair comparison, so its ``PolynomialDecayAverager(model)`` (default ``gamma=8``) steps after
  every optimizer step and **the reported eval loss and metric are those of the averaged weights**; the last
  iterate's are kept beside them (``eval_loss_last_iterate``, ``metric_last_iterate``), for information. The averager
  averages ``model.state_dict()`` entry by entry, so a tied weight (GPT-2's ``wte``/``lm_head``) is averaged twice per
  step, i.e. with a shorter window; used as packaged. The lr recorded is the ``eta`` the step used (group 0's).
* ``gen-optim``: the authors' ``GeN.lr_parabola`` (PyPI ``gen-optim`` 0.1.1) as in their README: AdamW from lr 1e-4,
  called between backward and ``optimizer.step()`` every ``lazy_freq=4`` steps with a fresh training batch and the
  horizon factor ``scale = 1 - t/T``; the Trainer's scheduler leaves the lr it sets alone.
* ``gen-adamw`` / ``gen-sgd``: ``GeNTrainer`` + ``GeNTrainingArguments(lr_scheduler_type="gen")`` with every ``gen_*``
  at hf-gen's default and the Trainer's default starting ``learning_rate`` (5e-5); AdamW (the Trainer's) or
  ``torch.optim.SGD(momentum=0.9)``.
* ``gen-adamw-cosine``: GeN-AdamW with the cosine decay shape (``gen_decay="cosine"``) on the default window lines:
  the default before the level was left to anneal itself. ``gen-adamw-cooldown``: the level as it is until the last
  20% of the run, then a ``1 - sqrt`` cooldown to 0 (``gen_decay="cooldown"``; not a default).
* ``gen-adamw-same``: GeN-AdamW with the non-default ``gen_probe_batch="same"`` (lines on their own batch; like every
  one-step estimate, under the cosine shape by default).
* ``gen-adamw-next``: GeN-AdamW with ``gen_probe_batch="next"``: one-step lines on the next batch, the default before
  ``"averages"`` (cosine shape by default). ``gen-adamw-averages`` sets the window lines explicitly (runs made before
  they became the default), with the cosine shape they had then.
* ``gen-adamw-averages-next``: the window lines once settled, but the fast start on one-step lines on the next batch
  (``gen_fast_start_lines="next"``), with the cosine shape: the default before the fast start measured window lines
  too. ``gen-adamw-windows``: the fast start on window lines alone (``gen_fast_start_lines="windows"``, no cap from
  the last step's line), with the cosine shape.
* ``gen-adamw-adaptive16`` / ``gen-adamw-adaptive32``: GeN-AdamW with adaptive recompute, ``gen_interval=4`` and
  ``gen_max_interval`` 16 / 32 (the gap doubles after each steady update up to the cap, and drops back to 4 on any
  other outcome), on one-step lines on the next batch, since the window lines refuse an adaptive gap; run on request
  (``--families``), not part of the main comparison.

Every GeN run's record holds its ``gen_trace.jsonl`` (``gen_trace``), the number of GeN updates (``gen_updates``)
and the optimizer steps they set the lr of (``gen_update_steps``).

The lr actually used at each optimizer step is recorded by ``LRRecorder``.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from dataclasses import asdict, dataclass

import torch
from transformers import BatchEncoding, Trainer, TrainerCallback, TrainingArguments

from hf_gen import GeNTrainer, GeNTrainingArguments
from hf_gen.trace import read_trace

__all__ = [
    "Contender", "LRRecorder", "run_contender", "TRAINER_DEFAULT_LR", "GEN_OPTIM_START_LR", "SCHEDULEFREE_LR",
    "MECHANIC_BASE_LR", "GEN_VARIANTS", "ADAPTIVE_CAPS",
]  # fmt: skip

TRAINER_DEFAULT_LR = TrainingArguments.__dataclass_fields__["learning_rate"].default  # 5e-5
GEN_OPTIM_START_LR = 1e-4  # the authors' README: AdamW(model.parameters(), lr=1e-4)
GEN_OPTIM_LAZY_FREQ = 4
SCHEDULEFREE_LR = 2.5e-3  # schedulefree.AdamWScheduleFree's default lr
SGD_MOMENTUM = 0.9
WARMUP_FRACTION = 0.05  # the warmup of the adamw-cosine-warmup grid: 5% of the steps, a common fine-tuning choice
MECHANIC_BASE_LR = 1.0  # mechanic-pytorch README: mechanize(torch.optim.SGD)(model.parameters(), lr=1.0)
GEN_INTERVAL = GeNTrainingArguments.__dataclass_fields__["gen_interval"].default  # 4: the fixed interval
ADAPTIVE_CAPS = (16, 32)  # gen_max_interval of the gen-adamw-adaptive* families

FAMILIES = {
    "adamw-linear": "AdamW + linear decay",
    "adamw-cosine": "AdamW + cosine decay",
    "adamw-cosine-warmup": "AdamW + cosine decay after a linear warmup over 5% of the steps",
    "trainer-default": "the Trainer's defaults: AdamW, linear decay from lr 5e-5, no warmup",
    "adamw-constant": "AdamW, constant lr",
    "prodigy": "Prodigy (defaults)",
    "dadapt-adam": "D-Adaptation Adam (defaults)",
    "schedulefree-adamw": "Schedule-Free AdamW (defaults)",
    "mechanic": "Mechanic (defaults) on AdamW at base lr 1",
    "dog": "DoG (defaults), evaluated on its polynomial-decay iterate average as its authors recommend",
    "gen-optim": "gen-optim 0.1.1 (authors' GeN, AdamW, lazy_freq 4)",
    "gen-adamw": "hf-gen GeN-AdamW (defaults: every window line in units of the lr its steps ran at and charged "
    "with the jitter; once settled, the k-th smoothed line weighs at least 1/(k+1), each as the steady-state Kalman "
    "gain of a measurement with one batch's noise; a window that lost ground is taken back; ends on the mean of the "
    "last 20% of the steps' weights)",
    "gen-adamw-no-kalman": "hf-gen GeN-AdamW with gen_kalman_gain=False (each settled window line weighed with the "
    "same memory in steps as a one-step line every gen_interval steps: the default before the Kalman gain)",
    "gen-adamw-uncounted": "hf-gen GeN-AdamW with gen_smooth_by_count=False (plain smoothing from the first settled "
    "line: the default before the count)",
    "gen-adamw-level-unit": "hf-gen GeN-AdamW with gen_pace_unit=False (each window line in units of the level at "
    "its close: the default before the lines' unit was the lr their steps ran at)",
    "gen-adamw-count": "hf-gen GeN-AdamW with gen_smooth_by_count=True (once settled, the k-th smoothed line "
    "weighs at least 1/(k+1): the option's name before it became the default)",
    "gen-adamw-start-charged": "hf-gen GeN-AdamW with gen_jitter_cost=False (only the fast start's lines charged "
    "with the jitter: the default before every line was)",
    "gen-adamw-uncharged": "hf-gen GeN-AdamW with gen_jitter_cost=False and gen_fast_start_jitter=False (no line "
    "charged with the jitter: the default before the fast start's charge)",
    "gen-adamw-keep": "hf-gen GeN-AdamW with gen_undo_lost_windows=False (no window taken back: the default before "
    "the undo)",
    "gen-adamw-last": "hf-gen GeN-AdamW with gen_tail_average=0 and gen_undo_lost_windows=False (ends on the last "
    "iterate: the default before the tail average)",
    "gen-adamw-warmup": "hf-gen GeN-AdamW with the Trainer's warmup_steps at the grid's own (5% of the steps): the lr "
    "rises linearly over them with nothing measured, and GeN starts after them (not a default)",
    "gen-adamw-warmup20": "hf-gen GeN-AdamW with the Trainer's warmup_steps at 20% of the steps, GeN starting after "
    "them (on the 150-step fine-tunes the first 30 steps, where the new head's transient shows in the window lines; "
    "not a default)",
    "gen-sgd": "hf-gen GeN-SGD (defaults, momentum 0.9)",
    "gen-sgd-no-kalman": "hf-gen GeN-SGD with gen_kalman_gain=False (momentum 0.9; the default before the Kalman "
    "gain)",
    "gen-sgd-uncounted": "hf-gen GeN-SGD with gen_smooth_by_count=False (momentum 0.9; the default before the count)",
    "gen-sgd-level-unit": "hf-gen GeN-SGD with gen_pace_unit=False (momentum 0.9; the default before the lines' "
    "unit was the lr their steps ran at)",
    "gen-sgd-start-charged": "hf-gen GeN-SGD with gen_jitter_cost=False (momentum 0.9; the default before every "
    "line was charged)",
    "gen-sgd-uncharged": "hf-gen GeN-SGD with gen_jitter_cost=False and gen_fast_start_jitter=False (momentum 0.9; "
    "the default before the fast start's charge)",
    "gen-sgd-keep": "hf-gen GeN-SGD with gen_undo_lost_windows=False (momentum 0.9; the default before the undo)",
    "gen-sgd-last": "hf-gen GeN-SGD with gen_tail_average=0 and gen_undo_lost_windows=False (momentum 0.9; the "
    "default before the tail average)",
    "gen-adamw-same": "hf-gen GeN-AdamW with gen_probe_batch='same' (lines measured on their own batch)",
    "gen-adamw-averages": "hf-gen GeN-AdamW with gen_probe_batch='averages' (the line through two windows' means) "
    "and the cosine shape",
    "gen-adamw-next": "hf-gen GeN-AdamW with gen_probe_batch='next' (one-step lines, next batch: an old default)",
    "gen-adamw-averages-next": "hf-gen GeN-AdamW with gen_fast_start_lines='next' and the cosine shape (window "
    "lines once settled, a one-step fast start: an old default)",
    "gen-adamw-windows": "hf-gen GeN-AdamW with gen_fast_start_lines='windows' and the cosine shape (the fast start "
    "on window lines alone, no cap from the last step's line)",
    "gen-adamw-cosine": "hf-gen GeN-AdamW with gen_decay='cosine' (the default before the level annealed itself)",
    "gen-adamw-cooldown": "hf-gen GeN-AdamW with gen_decay='cooldown' (the level as it is, then 1 - sqrt over the "
    "last 20% of the run; not a default)",
    "gen-adamw-pace": "hf-gen GeN-AdamW with gen_pace_unit=True (each window line in units of the lr its steps ran "
    "at: the option's name before it became the default)",
    "gen-adamw-jitter": "hf-gen GeN-AdamW with gen_jitter_cost (each window line charged with what a longer step "
    "costs in jitter; ending on the last iterate, no window taken back: measured before those defaults)",
    "gen-adamw-kalman": "hf-gen GeN-AdamW with gen_kalman_gain=True (each settled window line weighed as the "
    "steady-state Kalman gain of a drifting level measured with one batch's noise: the option's name before it became "
    "the default)",
    "gen-adamw-jitter-tail": "hf-gen GeN-AdamW with gen_jitter_cost=True and gen_pace_unit=False (every window "
    "line charged with the jitter, windows taken back, ending on the tail's mean: the option's name before it became "
    "the default)",
    "gen-adamw-lower": "hf-gen GeN-AdamW with gen_lower_at_once (once settled, a lower level is taken at once, only "
    "raises are smoothed; on the default before the fast start's charge; not a default)",
    **{
        f"gen-adamw-adaptive{cap}": f"hf-gen GeN-AdamW with adaptive recompute (gen_interval={GEN_INTERVAL} doubling "
        f"up to gen_max_interval={cap}; not a default)"
        for cap in ADAPTIVE_CAPS
    },
}
# The GeN families: the gen_* arguments each sets on top of hf-gen's defaults (gen-sgd differs in its optimizer only).
# The families measured before a default changed keep what they ran with: each window line in units of the level at
# its close (LEVEL_UNIT), only the fast start's lines charged with the jitter (START_CHARGED), no line charged
# (UNCHARGED), no window taken back (KEEP), and the options measured before the tail average ending on the last
# iterate (LAST); all of them, and the options measured before the count, smooth plainly (UNCOUNTED); all of those,
# and the options measured before the Kalman gain, weigh each settled line with the same memory in steps (NO_KALMAN).
NO_KALMAN = {"gen_kalman_gain": False}
UNCOUNTED = {"gen_smooth_by_count": False, **NO_KALMAN}
LEVEL_UNIT = {"gen_pace_unit": False, **UNCOUNTED}
START_CHARGED = {"gen_jitter_cost": False, **LEVEL_UNIT}
UNCHARGED = {"gen_fast_start_jitter": False, **START_CHARGED}
KEEP = {"gen_undo_lost_windows": False, **UNCHARGED}
LAST = {"gen_tail_average": 0.0, **KEEP}
GEN_VARIANTS = {
    "gen-adamw": {},
    "gen-adamw-no-kalman": NO_KALMAN,
    "gen-adamw-uncounted": UNCOUNTED,
    "gen-adamw-level-unit": LEVEL_UNIT,
    "gen-adamw-start-charged": START_CHARGED,
    "gen-adamw-uncharged": UNCHARGED,
    "gen-adamw-keep": KEEP,
    "gen-adamw-last": LAST,
    "gen-adamw-warmup": {},  # the defaults, with the Trainer's warmup_steps set in _make_trainer (GEN_WARMUP)
    "gen-adamw-warmup20": {},
    "gen-sgd": {},
    "gen-sgd-no-kalman": NO_KALMAN,
    "gen-sgd-uncounted": UNCOUNTED,
    "gen-sgd-level-unit": LEVEL_UNIT,
    "gen-sgd-start-charged": START_CHARGED,
    "gen-sgd-uncharged": UNCHARGED,
    "gen-sgd-keep": KEEP,
    "gen-sgd-last": LAST,
    "gen-adamw-cosine": {"gen_decay": "cosine", **KEEP},
    "gen-adamw-cooldown": {"gen_decay": "cooldown", **KEEP},
    "gen-adamw-pace": {"gen_pace_unit": True, **UNCOUNTED},
    "gen-adamw-count": {"gen_smooth_by_count": True, **NO_KALMAN},
    "gen-adamw-jitter": {**LAST, "gen_jitter_cost": True},  # after LAST, whose gen_jitter_cost is False
    "gen-adamw-kalman": {"gen_kalman_gain": True},
    "gen-adamw-lower": {"gen_lower_at_once": True, **UNCHARGED},
    "gen-adamw-jitter-tail": {"gen_jitter_cost": True, **LEVEL_UNIT},
    "gen-adamw-same": {"gen_probe_batch": "same", **UNCOUNTED},
    "gen-adamw-averages": {"gen_probe_batch": "averages", "gen_decay": "cosine", **KEEP},
    "gen-adamw-next": {"gen_probe_batch": "next", **UNCOUNTED},
    "gen-adamw-averages-next": {
        "gen_probe_batch": "averages",
        "gen_fast_start_lines": "next",
        "gen_decay": "cosine",
        **KEEP,
    },
    "gen-adamw-windows": {"gen_fast_start_lines": "windows", "gen_decay": "cosine", **KEEP},
    # adaptive recompute acts on one-step lines (the window lines are measured once per window, and refuse it)
    **{
        f"gen-adamw-adaptive{cap}": {
            "gen_interval": GEN_INTERVAL,
            "gen_max_interval": cap,
            "gen_probe_batch": "next",
            **UNCOUNTED,
        }
        for cap in ADAPTIVE_CAPS
    },
}


# The GeN families run with the Trainer's warmup, as a fraction of the steps: the adamw-cosine-warmup grid's own, and
# one that spans the new head's transient on the 150-step fine-tunes (their first three 8-step windows).
GEN_WARMUP = {"gen-adamw-warmup": WARMUP_FRACTION, "gen-adamw-warmup20": 0.2}


def gen_settings(family: str, options) -> dict:
    """The ``gen_*`` arguments a GeN family's run sets on top of hf-gen's defaults: the family's own, then the
    contender's ``options`` (``(name, value)`` pairs)."""
    return {**GEN_VARIANTS[family], **dict(options)}


LR_FREE = ("prodigy", "dadapt-adam", "schedulefree-adamw", "mechanic", "dog", "gen-optim")


@dataclass(frozen=True)
class Contender:
    """One lr method. ``lr`` is the (starting) lr where the method takes one; ``None`` for the lr-free optimizers
    run at their own lr (Prodigy, D-Adaptation, Mechanic, DoG). ``options``: further ``gen_*`` arguments of a GeN
    family, as ``(name, value)`` pairs (the ablation's levers)."""

    family: str
    lr: float | None = None
    options: tuple = ()

    @property
    def name(self) -> str:
        return self.family if self.lr is None else f"{self.family}@{self.lr:g}"


class FixedOrderMixin:
    """Reads the training set in order: ``Task.train_rows(seed)`` already holds the run's sample sequence."""

    def _get_train_sampler(self, train_dataset=None):
        return torch.utils.data.SequentialSampler(train_dataset if train_dataset is not None else self.train_dataset)


class BenchTrainer(FixedOrderMixin, Trainer):
    pass


class BenchGeNTrainer(FixedOrderMixin, GeNTrainer):
    pass


class KeepLR(torch.optim.lr_scheduler.LRScheduler):
    """A scheduler that leaves each group's lr as something else (gen-optim) set it."""

    def get_lr(self):
        return [group["lr"] for group in self.optimizer.param_groups]


class LRRecorder(TrainerCallback):
    """The lr group 0 actually stepped with, per optimizer step.

    Read after the step (GeN sets the applied lr in the optimizer's post-hook; gen-optim before the step; stock
    schedulers after it), except for Prodigy and D-Adaptation, whose step uses ``d * lr`` with ``d`` as it was before
    the step (it updates ``d`` during the step), and Schedule-Free, whose step records ``scheduled_lr``. Mechanic:
    the base lr times ``sum(s)`` as its step set it (the scale applied to the base optimizer's displacement); DoG: the
    ``eta`` its step computed and moved with.
    """

    def __init__(self) -> None:
        self.trace: list[float] = []
        self._before: float | None = None

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        group = optimizer.param_groups[0]
        self._before = float(group["d"] * group["lr"]) if "d" in group else None

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        group = optimizer.param_groups[0]
        mechanic = getattr(optimizer, "optimizer", optimizer).state.get("_mechanic")
        if self._before is not None:
            self.trace.append(self._before)
        elif mechanic is not None:
            self.trace.append(float(group["lr"] * mechanic["s"].sum()))
        elif "eta" in group:
            self.trace.append(float(group["eta"][0]))
        else:
            self.trace.append(float(group.get("scheduled_lr", group["lr"])))


class AveragingCallback(TrainerCallback):
    """DoG's iterate averaging: ``dog.PolynomialDecayAverager`` (defaults) stepped after every optimizer step.

    ``use_average`` loads the averaged weights into the model for the evaluation and returns the last iterate's.
    """

    def __init__(self, model) -> None:
        from dog import PolynomialDecayAverager

        self.averager = PolynomialDecayAverager(model)

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.averager.step()

    def use_average(self, model) -> dict:
        last = {key: value.detach().clone() for key, value in model.state_dict().items()}
        model.load_state_dict(self.averager.averaged_model.state_dict())
        return last


class GenOptimCallback(TrainerCallback):
    """Calls the authors' ``lr_parabola`` between backward (and the Trainer's clipping) and ``optimizer.step()``.

    As in the gen-optim README: every ``lazy_freq``-th batch (``(batch_idx + 1) % lazy_freq == 0``), with a separate
    iterator over the training data for its probes (``tr_iter``), ``task="NLU"`` (``net(**batch).loss``), and the
    horizon factor ``scale = 1 - t/T``.
    """

    def __init__(self, batches, total_steps: int, lazy_freq: int = GEN_OPTIM_LAZY_FREQ) -> None:
        self.batches = (BatchEncoding(batch) for batch in batches)
        self.total_steps = total_steps
        self.lazy_freq = lazy_freq
        self.calls = 0

    def on_pre_optimizer_step(self, args, state, control, model=None, optimizer=None, **kwargs):
        from GeN import lr_parabola

        step = state.global_step
        if (step + 1) % self.lazy_freq == 0:
            self.calls += 1
            lr_parabola(
                model,
                optimizer,
                tr_iter=self.batches,
                device=args.device,
                task="NLU",
                scale=1.0 - step / self.total_steps,
                lr_factor=[-1, 0, 1],
            )


def _args(cls, task, seed: int, run_dir: str, **kwargs):
    return cls(
        output_dir=run_dir,
        max_steps=task.steps,
        per_device_train_batch_size=task.batch_size,
        per_device_eval_batch_size=task.eval_batch_size,
        seed=seed,
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
        dataloader_num_workers=0,
        weight_decay=0.0,
        warmup_steps=0,
        **kwargs,
    )


def _make_trainer(contender: Contender, task, seed: int, run_dir: str, model):
    family, lr = contender.family, contender.lr
    callbacks: list = []
    optimizers = (None, None)
    trainer_cls = BenchTrainer
    if contender.options and family not in GEN_VARIANTS:
        raise ValueError(f"options {contender.options} are gen_* arguments: only GeN families take them, not {family}")
    if family == "trainer-default":
        args = _args(TrainingArguments, task, seed, run_dir, learning_rate=TRAINER_DEFAULT_LR)
    elif family in ("adamw-linear", "adamw-cosine", "adamw-constant"):
        args = _args(TrainingArguments, task, seed, run_dir, learning_rate=lr, lr_scheduler_type=family.split("-")[1])
    elif family == "adamw-cosine-warmup":
        args = _args(TrainingArguments, task, seed, run_dir, learning_rate=lr, lr_scheduler_type="cosine")
        args.warmup_steps = max(1, round(WARMUP_FRACTION * task.steps))
    elif family == "prodigy":
        from prodigyopt import Prodigy

        args = _args(TrainingArguments, task, seed, run_dir, lr_scheduler_type="constant")
        optimizers = (Prodigy(model.parameters()), None)
    elif family == "dadapt-adam":
        from dadaptation import DAdaptAdam

        args = _args(TrainingArguments, task, seed, run_dir, lr_scheduler_type="constant")
        optimizers = (DAdaptAdam(model.parameters()), None)
    elif family == "mechanic":
        from mechanic_pytorch import mechanize

        args = _args(TrainingArguments, task, seed, run_dir, lr_scheduler_type="constant")
        optimizer = mechanize(torch.optim.AdamW)(model.parameters(), lr=MECHANIC_BASE_LR, weight_decay=0.0)
        optimizers = (optimizer, None)
    elif family == "dog":
        from dog import DoG

        trainable = [p for p in model.parameters() if p.requires_grad]
        args = _args(TrainingArguments, task, seed, run_dir, lr_scheduler_type="constant")
        optimizers = (DoG(trainable), None)  # DoG reads every parameter's grad: frozen ones (LoRA) have none
        callbacks.append(AveragingCallback(model))
    elif family == "schedulefree-adamw":
        args = _args(
            TrainingArguments, task, seed, run_dir, learning_rate=lr, optim="schedule_free_adamw",
            lr_scheduler_type="constant",
        )  # fmt: skip
    elif family == "gen-optim":
        args = _args(TrainingArguments, task, seed, run_dir, learning_rate=lr)
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
        optimizers = (optimizer, KeepLR(optimizer))
        callbacks.append(GenOptimCallback(task.probe_batches(seed), task.steps))
    elif family in GEN_VARIANTS:
        variant = gen_settings(family, contender.options)
        args = _args(GeNTrainingArguments, task, seed, run_dir, learning_rate=lr, lr_scheduler_type="gen", **variant)
        trainer_cls = BenchGeNTrainer
        if family in GEN_WARMUP:
            args.warmup_steps = max(1, round(GEN_WARMUP[family] * task.steps))
        if family.startswith("gen-sgd"):
            optimizers = (torch.optim.SGD(model.parameters(), lr=lr, momentum=SGD_MOMENTUM), None)
    else:
        raise ValueError(f"unknown contender family {family!r}; known: {', '.join(FAMILIES)}")
    recorder = LRRecorder()
    trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=task.train_rows(seed),
        eval_dataset=task.eval_dataset,
        data_collator=task.collator,
        compute_metrics=task.compute_metrics,
        optimizers=optimizers,
        callbacks=[*callbacks, recorder],
    )
    return trainer, recorder


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def run_contender(contender: Contender, task, seed: int, workdir: str, keep: bool = False) -> dict:
    """Train and evaluate one contender once; return its record (metrics, wall time, lr trace)."""
    tag = "".join(f"-{k}={v}" for k, v in contender.options)
    run_dir = os.path.join(workdir, task.name, f"{contender.name}{tag}-s{seed}")
    shutil.rmtree(run_dir, ignore_errors=True)
    model = task.model(seed)
    started = time.perf_counter()
    trainer, recorder = _make_trainer(contender, task, seed, run_dir, model)
    result = trainer.train()
    train_s = time.perf_counter() - started
    averaging = next((c for c in trainer.callback_handler.callbacks if isinstance(c, AveragingCallback)), None)
    last_iterate = averaging.use_average(trainer.model) if averaging is not None else None
    metrics = trainer.evaluate()
    wall_s = time.perf_counter() - started
    eval_loss = float(metrics["eval_loss"])
    record = {
        **asdict(contender),
        "contender": contender.name,
        "seed": seed,
        "eval_loss": _finite(eval_loss),
        "metric": _finite(task.metric_from(metrics)) if math.isfinite(eval_loss) else None,
        "train_loss": _finite(result.training_loss),
        "train_s": round(train_s, 2),
        "wall_s": round(wall_s, 2),
        "steps": int(trainer.state.global_step),
        "lr_trace": recorder.trace,
    }
    trace = read_trace(run_dir)
    if trace:  # GeN: every update's record, and where the recomputes fell (recomputes per step = updates / steps)
        record["gen_trace"] = trace
        record["gen_updates"] = len(trace)
        record["gen_fallbacks"] = sum(r["fallback"] is not None for r in trace)
        record["gen_update_steps"] = [r["step"] for r in trace]
        record["gen_intervals"] = [r["interval"] for r in trace]  # the gap in force after each update
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, GenOptimCallback):
            record["gen_optim_calls"] = callback.calls
    if last_iterate is not None:  # information only, outside wall_s: the weights DoG trained, before averaging
        record["evaluated_on"] = "iterate average (dog.PolynomialDecayAverager, gamma 8)"
        trainer.model.load_state_dict(last_iterate)
        last = trainer.evaluate()
        last_loss = float(last["eval_loss"])
        record["eval_loss_last_iterate"] = _finite(last_loss)
        record["metric_last_iterate"] = _finite(task.metric_from(last)) if math.isfinite(last_loss) else None
    if not keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    return record
