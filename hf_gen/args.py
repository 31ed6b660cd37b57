"""`GeNTrainingArguments`: all of `TrainingArguments`, plus the `gen_*` settings."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field

from transformers import TrainingArguments
from transformers.trainer_utils import SchedulerType

from .scheduler import DECAY_SHAPES, FALLBACK_POLICIES, GEN_SETTINGS, validate_gen_settings

__all__ = ["GEN_SCHEDULER_NAME", "GeNTrainingArguments"]

GEN_SCHEDULER_NAME = "gen"
GEN_MODES = ("approx", "exact")
PROBE_BATCHES = ("next", "same", "averages")
FAST_START_LINES = ("both", "windows", "next")
# The on/off options read by the trainer and its line schemes (the scheduler checks its own: GEN_SETTINGS).
SCHEME_FLAGS = ("gen_use_slope", "gen_offload_snapshot")
DEFAULT_TAIL = 0.2  # gen_tail_average with no decay shape: the last fifth of the run, the cooldown's fraction


STOCK_TRAINER_REFUSAL = (
    "lr_scheduler_type='gen' is hf_gen's generalized Newton's method, which a stock transformers Trainer cannot "
    "build: train with hf_gen.GeNTrainer, or put hf_gen.GeNMixin first in your trainer's bases (e.g. "
    "class MyTrainer(GeNMixin, SFTTrainer)), together with GeNTrainingArguments"
)


class _GeNSchedulerName(str):
    """``"gen"``, with the ``.value`` that transformers reads off ``SchedulerType`` members (e.g. its model card).

    A stock ``Trainer`` handed ``GeNTrainingArguments`` builds its scheduler with ``SchedulerType(name)``, whose
    by-value lookup hashes the name; that one lookup raises ``STOCK_TRAINER_REFUSAL`` instead of transformers'
    "gen is not a valid SchedulerType". Every other use hashes like the plain string ``"gen"``.
    """

    @property
    def value(self) -> str:
        return str(self)

    def __hash__(self) -> int:
        caller = sys._getframe(1)
        if caller.f_code.co_name in ("__new__", "__call__") and caller.f_globals.get("__name__") == "enum":
            enum_class = caller.f_locals.get("cls")
            if isinstance(enum_class, type) and issubclass(enum_class, SchedulerType):
                raise ValueError(STOCK_TRAINER_REFUSAL)
        return str.__hash__(self)


def _option(default, help_text: str, choices: tuple[str, ...] | None = None):
    """A ``gen_*`` dataclass field with its ``--help`` text (and its allowed values, listed by ``--help``).

    argparse reads ``%`` in a help text as a format directive, so a literal one is doubled here, as
    ``TrainingArguments`` does in its own help texts; ``--help`` prints it once.
    """
    help_text = help_text.replace("%", "%%")
    metadata = {"help": help_text} if choices is None else {"help": help_text, "choices": list(choices)}
    return field(default=default, metadata=metadata)


@dataclass
class GeNTrainingArguments(TrainingArguments):
    """`TrainingArguments` with the generalized Newton's method as an lr scheduler.

    Set ``lr_scheduler_type="gen"`` (or ``--lr_scheduler gen`` on the command line) and train with
    ``GeNTrainer``. ``learning_rate`` is then the starting lr and the first probe radius; GeN moves it
    from there. Every ``gen_*`` field is checked here, so a bad value fails before any model loads.

    Attributes:
        gen_mode: ``"approx"`` (parabola from losses on the line) or ``"exact"`` (Hessian-vector product).
        gen_probe_batch: ``"averages"`` (the default in approx mode: the line through two windows' mean weights, out
            of sample), ``"next"`` (the line of one step, on the next batch)
            or ``"same"`` (the step's own line on its own batch).
        gen_window: ``"averages"``: steps per window (default: a twentieth of the run, at least ``gen_interval``).
        gen_fast_start_lines: ``"averages"``: the fast start's lines: through windows of ``gen_interval`` steps,
            with each climb capped by the last step's line (``"both"``, the default), the window lines alone
            (``"windows"``), or one-step lines on the next batch (``"next"``).
        gen_interval: Recompute every N optimizer steps.
        gen_max_interval: Adaptive recompute of one-step lines (``"next"``, ``"same"``; refused with ``"averages"``):
            the gap doubles after each update whose estimate lands inside the bound, up to this many steps, and drops
            back to ``gen_interval`` on any other outcome. ``None``: fixed.
        gen_gamma: Smoothing in ``[0, 1)``: the level moves as ``level**gamma * target**(1 - gamma)`` (``gamma`` at
            most ``k / (k + 1)`` on the ``k``-th settled update with ``gen_smooth_by_count``).
        gen_max_change: Per-update bound: each target lies in ``[lr / c, lr * c]``.
        gen_lr_min: Absolute lower bound on group 0's lr.
        gen_lr_max: Absolute upper bound on group 0's lr.
        gen_fallback: What an estimate with a non-finite slope or curvature does: ``"keep"``, ``"shrink"`` or
            ``"error"`` (which also raises on every other unusable estimate).
        gen_fast_start: Recompute every step without smoothing until an estimate lands inside the bound.
        gen_search_probes: Extra probes allowed on the first step(s): the cut of an overshooting first step (next
            batch) or the fast start's line search (same batch). ``0`` = none.
        gen_fast_decrease: Clip only increases.
        gen_lower_at_once: Smooth only raises of the level: a lower target is taken at once (within the change bound).
        gen_smooth_by_count: Once settled, weigh the ``k``-th smoothed estimate by at least ``1 / (k + 1)``: the level
            is the geometric mean of the level the fast start settled at and the estimates since, until ``gen_gamma``'s
            memory is the shorter. Default: on with ``"averages"``, off (plain smoothing from the first settled
            estimate) with the one-step lines.
        gen_decay: Annealing shape composed with the level: ``"none"``, ``"cosine"``, ``"linear"`` or
            ``"cooldown"`` (constant, then down to 0 over the last 20% of the run). Default:
            ``"none"`` with ``"averages"`` (its window lines lower the level themselves late in a run), ``"cosine"``
            with the greedy one-step estimates (``"next"``, ``"same"``, exact mode). The Trainer's ``warmup_steps``
            (steps, or a fraction of the run below 1) comes before GeN: the lr rises linearly to ``learning_rate``
            over the warmup, nothing is measured, and GeN starts after it as it would on the first step; the shape's
            decay runs over the steps after the warmup. Default ``warmup_steps=0``: GeN starts on the first step.
        gen_probe_offsets: approx, same batch: probe points in units of the current lr.
        gen_use_slope: approx: use the backward slope in the fit.
        gen_jitter_cost: ``"averages"``: charge each line through two windows' means with what a longer step costs in
            jitter (the live weights' loss above the line's parabola, times the step's length). Default: on with
            ``"averages"``; off otherwise.
        gen_fast_start_jitter: ``"averages"`` with the fast start: charge the fast start's window lines with the
            jitter's cost (with ``gen_jitter_cost=False``, only those). Default: on with ``"averages"`` and the fast
            start on window lines; off otherwise.
        gen_tail_average: End training on the mean of the trainable weights over this last fraction of the optimizer
            steps (0: the last iterate). Default: ``0.2`` with no decay shape (``gen_decay="none"``, the default
            with ``"averages"``), whose last iterate still jitters at the level; ``0`` with a shape, which anneals
            the jitter away itself, and with ``load_best_model_at_end``, which asks for a checkpoint instead.
        gen_undo_lost_windows: ``"averages"``: take back a window whose mean training loss rose over the previous
            window's (Welch's test at the three-sigma tail) and whose mean weights are worse on the batch after it:
            the weights return to the previous window's mean, the level halves and stays at or below that. Default:
            on with ``"averages"``.
        gen_pace_unit: ``"averages"``: a line through two windows' means is in units of the lr its steps were walked
            at (the steps' lrs, weighted as they move the later mean away from the earlier one), not of the level at
            its close; the two differ after the level changed between the windows (every fast-start climb).
            Default: on with ``"averages"``; off otherwise.
        gen_kalman_gain: ``"averages"``: weigh each settled line as the steady-state Kalman gain of a drifting level
            measured with one batch's noise (:func:`hf_gen.scheduler.line_gamma`), instead of with the same memory in
            steps as a one-step line every ``gen_interval`` steps; the two agree at short windows and part at long
            ones (a weight of 0.47 instead of 0.98 on the 150-step windows of a 3,000-step run). Default: on with
            ``"averages"``; off otherwise.
        gen_offload_snapshot: Keep GeN's copy of the trainable parameters in CPU memory.
    """

    lr_scheduler_type: str = field(
        default="linear",
        metadata={
            "help": "The learning rate scheduler: 'gen' for the generalized Newton's method, or any stock name "
            "(linear, cosine, constant, ...)."
        },
    )
    lr_scheduler: str | None = field(
        default=None,
        metadata={
            "help": "Alias of --lr_scheduler_type (so that `--lr_scheduler gen` is not ambiguous on the command "
            "line). 'gen' selects the generalized Newton's method; any stock name works too."
        },
    )
    gen_mode: str = _option(
        "approx",
        "'approx': fit a parabola to the loss at points along the update (one extra no-grad forward per recompute "
        "by default). 'exact': curvature from a Hessian-vector product (double backward; needs an attention "
        "implementation with double-backward support, e.g. attn_implementation='eager').",
        GEN_MODES,
    )
    gen_interval: int = _option(4, "Recompute the lr every N optimizer steps (the first step always recomputes).")
    gen_max_interval: int | None = _option(
        None,
        "Adaptive recompute: after an update whose estimate lands inside the per-update bound (no clip, no "
        "fallback), the gap to the next recompute doubles, up to this many optimizer steps; any other outcome sets "
        "it back to gen_interval. Unset: recompute every gen_interval steps. One-step lines only "
        "(gen_probe_batch='next' or 'same'): the window lines are measured once per window (gen_window).",
    )
    gen_gamma: float = _option(
        0.9,
        "Smoothing of the lr in [0, 1): the level moves as level**gamma * estimate**(1 - gamma) (gamma at most "
        "k/(k+1) on the k-th update after the fast start settles, with gen_smooth_by_count).",
    )
    gen_max_change: float = _option(
        2.0, "Bound on one update: each estimate is clipped to [lr / max_change, lr * max_change] (>= 1; inf = none)."
    )
    gen_lr_min: float = _option(0.0, "Absolute lower bound on the lr of param group 0.")
    gen_lr_max: float = _option(
        1.0,
        "Absolute upper bound on the lr of param group 0. An estimate outside [gen_lr_min, gen_lr_max] is replaced "
        "by the bound and recorded as a fallback.",
    )
    gen_fallback: str = _option(
        "keep",
        "What an estimate with a non-finite slope or curvature (no direction) does: 'keep' the lr, or move it toward "
        "lr / gen_max_change ('shrink'); 'error' raises on every unusable estimate. The other unusable estimates "
        "move the lr toward a bound (no descent or a non-finite loss down, non-positive curvature up). Every "
        "fallback is recorded in gen_trace.jsonl and counted in gen/fallbacks.",
        FALLBACK_POLICIES,
    )
    gen_fast_start: bool = _option(
        True,
        "Until an estimate lands inside the per-update bound, recompute every step without smoothing (same-batch "
        "probes also search the step's line first), so a starting lr that is far off reaches the estimate at once.",
    )
    gen_search_probes: int = _option(
        6,
        "Extra no-grad forwards allowed on the first step(s). Next-batch probes: while the first step does not "
        "lower its own batch's loss it is cut gen_max_change**3-fold along its line. Same-batch probes: during the "
        "fast start the line is searched until an estimate lands within sqrt(gen_max_change) of its own probe. "
        "0 = off.",
    )
    gen_fast_decrease: bool = _option(
        False, "Clip only increases of the lr: an estimate below lr / gen_max_change is taken as it is."
    )
    gen_lower_at_once: bool = _option(
        False,
        "Smooth only raises of the lr: once settled, an estimate below the level is taken at once (within "
        "lr / gen_max_change), one above it is smoothed by gen_gamma as usual.",
    )
    gen_smooth_by_count: bool | None = _option(
        None,
        "Once settled, the k-th smoothed estimate gets a weight of at least 1/(k+1): the level is the geometric mean "
        "of the level the fast start settled at and the estimates since, until gen_gamma's own weight is larger. The "
        "settling level is one estimate; plain smoothing (False) weighs it as the mean of about 1/(1 - gen_gamma) of "
        "them. Without a fast start, learning_rate is that first estimate. With the window lines it binds only while "
        "k/(k+1) is below the window's own weight (gen_gamma ** (window / gen_interval), or the gain of "
        "gen_kalman_gain): the first few lines of a run of a few hundred steps, none at thousands (the first, with "
        "gen_kalman_gain). Default: on with gen_probe_batch='averages'; off with the "
        "one-step lines ('next', 'same', exact mode), whose greedy estimates are biased low over the horizon, so a "
        "level that follows them sooner loses (benchmarks/RESULTS.md). A checkpoint saved by an hf-gen release "
        "before this option resumes with plain smoothing, as it ran.",
    )
    gen_decay: str | None = _option(
        None,
        "Annealing composed with GeN: the applied lr is level x shape(t), with shape 'none' (GeN alone), 'cosine', "
        "'linear' (1 - t/T) or 'cooldown' (1, then 1 - sqrt over the last 20% of the run). Default: 'none' with "
        "gen_probe_batch='averages', whose lines through two windows' mean weights lower the level by themselves as "
        "the steps' progress shrinks late in a run; 'cosine' with the greedy one-step estimates ('next', 'same', "
        "exact mode), which do not anneal by themselves. warmup_steps comes before GeN: a linear rise to "
        "learning_rate with nothing measured, then GeN and the shape over the steps after it.",
        DECAY_SHAPES,
    )
    gen_probe_offsets: list[float] = field(
        default_factory=lambda: [1.0],
        metadata={
            "help": "approx mode: points on the update line where the loss is measured, in units of the current "
            "lr (1.0 = where the optimizer's step lands). Points other than 1.0 cost one forward each and a "
            "second copy of the trainable parameters."
        },
    )
    gen_use_slope: bool = _option(
        True,
        "approx mode: use the slope <grad L, d> from the backward pass in the fit. False fits it from the losses "
        "(needs two probe offsets, e.g. '-1 1').",
    )
    gen_probe_batch: str | None = _option(
        None,
        "approx mode: where the line is measured. 'next': out of sample, on the following step's batch (one "
        "forward at the previous weights; the copy of the parameters is held for one step). 'same': on the batch "
        "that made the step, whose own gradient noise biases the estimate up. 'averages': the line through the "
        "mean weights of the last two windows (gen_interval steps each during the fast start, then gen_window), on "
        "the batch after them: an estimate over many steps, not the greedy one-step lr (three forwards per window, "
        "two copies of the parameters held). Default: 'averages' for the default approx probe, else 'same'.",
        PROBE_BATCHES,
    )
    gen_window: int | None = _option(
        None,
        "gen_probe_batch='averages': optimizer steps per window whose mean weights the line runs through. Default: "
        "a twentieth of the run, at least gen_interval.",
    )
    gen_fast_start_lines: str = _option(
        "both",
        "gen_probe_batch='averages': the lines the fast start measures. 'both': lines through the means of windows "
        "of gen_interval steps, and the last step's line on the same batch, which caps how far a window's line may "
        "raise the lr (a step that is best for one batch can be several times the lr that works over a "
        "fine-tune; a short window early in a run from scratch still sees its steep start). 'windows': the window "
        "lines alone. 'next': one-step lines on the next batch (the averages scheme's fast start before windows).",
        FAST_START_LINES,
    )
    gen_jitter_cost: bool | None = _option(
        None,
        "gen_probe_batch='averages': a line through two windows' means sees the progress of the steps, not the "
        "jitter of the weights about it, which the means average out. The live weights carry it: their loss on the "
        "line's batch (the training step's, free) lies above the line's parabola, where their progress has brought "
        "them, by the jitter's cost. At a constant lr that cost grows in proportion to the lr, so each probe at c "
        "times the level is charged c times it, and the line's minimiser trades progress against jitter. On a "
        "pretrained fine-tune held at too high an lr the live weights lie well above the line, on a model trained "
        "from a config much less, so the charge tells them apart. No extra forward. Default: on with "
        "gen_probe_batch='averages'; off otherwise.",
    )
    gen_fast_start_jitter: bool | None = _option(
        None,
        "gen_probe_batch='averages' with gen_fast_start: charge the fast start's window lines with the jitter's "
        "cost, as gen_jitter_cost charges every window line; with gen_jitter_cost=False, only those (the default "
        "before every line was charged). The line that ends the fast start sets the level the first long window "
        "runs at, unmeasured. No extra forward. Default: on with 'averages' and the fast start on window lines "
        "(gen_fast_start_lines 'both' or 'windows'); off otherwise.",
    )
    gen_tail_average: float | None = _option(
        None,
        "End training on the mean of the trainable weights over the last fraction of the optimizer steps (0 = the "
        "last iterate; 0.2 = the last fifth). Without a decay shape the last iterate still jitters about where the "
        "run is; the mean of the tail averages that out, as stochastic weight averaging does. Default: 0.2 when "
        "gen_decay is 'none' (the default with gen_probe_batch='averages'), else 0 (a shape anneals the jitter "
        "itself); 0 with load_best_model_at_end, which keeps a checkpoint instead. Costs one more copy of the "
        "trainable parameters over the tail (in at least float32; on the CPU with gen_offload_snapshot) and one "
        "addition per step. Checkpoints keep the live weights and the tail's sum, so a resumed run ends on the same "
        "mean. The mean is set right after the last optimizer step, so the Trainer's evaluation and checkpoint at "
        "that step, the model train() returns and what evaluate() and save_model() then see are all the mean.",
    )
    gen_undo_lost_windows: bool | None = _option(
        None,
        "gen_probe_batch='averages': take back a window that lost ground. When a window's mean training loss is "
        "above the previous window's by Welch's test at the three-sigma tail (the steps' losses, kept on the "
        "device and read once per window), and on the batch after it the window's mean weights are worse than the "
        "previous window's (the line's first two probes, already measured), the weights return to the previous "
        "window's mean, the level halves at once (the change bound; fallback 'lost_window') and stays at or below "
        "that for the rest of the run. A fine-tune held at too high an lr can run well for hundreds of steps and "
        "then collapse to the loss of a constant guess, from which no lower lr brings it back; going back to weights "
        "from before the rise with a lower lr is what large runs do by hand. A rise the line's batch does not "
        "confirm (the data changed) is kept. The optimizer's state is kept. Costs nothing more: the previous mean "
        "is held and the probes are measured anyway. Default: on with 'averages'; off otherwise.",
    )
    gen_pace_unit: bool | None = _option(
        None,
        "gen_probe_batch='averages': the unit of a line through two windows' means is the lr its steps were walked "
        "at: the steps' lrs weighted as each moves the later mean away from the earlier one (a step early in the "
        "earlier window hardly does, one early in the later window fully), read from two running sums per step. "
        "Off: the level at the line's close, which is the same at a constant level but overstates the walk after a "
        "raise between the windows (by 23% at each doubling of the fast start, with its 4-step windows) "
        "and understates it after a cut, so each move of the level inflates the next estimate in its own direction. "
        "The live weights' place on the line (gen_jitter_cost) is read from the same sums. Costs two additions per "
        "step. Default: on with 'averages'; off otherwise. A checkpoint saved without the sums (by a run with "
        "gen_pace_unit=False, or an hf-gen release before this default) resumes only with gen_pace_unit=False.",
    )
    gen_kalman_gain: bool | None = _option(
        None,
        "gen_probe_batch='averages': the weight of each settled line through two windows' means. Off: gamma ** "
        "(window / gen_interval), the same memory in steps as a one-step line every gen_interval steps, which treats "
        "each line as exact; on the 150-step windows of a 3,000-step run one batch's line then sets the level almost "
        "alone (weight 0.98). On: the steady-state Kalman gain K of a level that drifts as a random walk and is "
        "measured once per line with one batch's noise, K**2 / (1 - K) proportional to the window, fixed so that a "
        "line every gen_interval steps still weighs 1 - gen_gamma (weights 0.14 at 8 steps, 0.18 at 15, 0.47 at "
        "150). No new constant and no cost. Default: on with 'averages'; off otherwise (False: the default before, "
        "which a run resumed from a checkpoint saved before this default ran with).",
    )
    gen_offload_snapshot: bool = _option(
        False,
        "Keep GeN's copies of the trainable parameters (one, on recompute steps, for 'next'; the window sum and "
        "previous mean of 'averages') in CPU memory, for models "
        "that do not fit twice on the accelerator.",
    )

    def __post_init__(self):
        if self.lr_scheduler is not None:
            self.lr_scheduler_type = self.lr_scheduler
        uses_gen = str(getattr(self.lr_scheduler_type, "value", self.lr_scheduler_type)) == GEN_SCHEDULER_NAME
        if uses_gen:
            # The stock SchedulerType enum rejects "gen"; validate the rest with a stand-in, then restore it.
            self.lr_scheduler_type = "constant"
        else:
            try:
                SchedulerType(self.lr_scheduler_type)
            except ValueError:
                names = [GEN_SCHEDULER_NAME] + [member.value for member in SchedulerType]
                raise ValueError(
                    f"unknown lr scheduler {self.lr_scheduler_type!r}: pass one of {', '.join(names)}"
                ) from None
        super().__post_init__()
        if uses_gen:
            self.lr_scheduler_type = _GeNSchedulerName(GEN_SCHEDULER_NAME)
            self.lr_scheduler = GEN_SCHEDULER_NAME
        self._validate_gen()

    def gen_scheduler_settings(self) -> dict:
        """The ``GeNScheduler`` keyword arguments these arguments set (``gen_<name>`` for each of ``GEN_SETTINGS``)."""
        return {name: getattr(self, f"gen_{name}") for name in GEN_SETTINGS}

    @property
    def uses_gen(self) -> bool:
        """Whether the lr is chosen by GeN (``lr_scheduler_type == "gen"``)."""
        return self.lr_scheduler_type == GEN_SCHEDULER_NAME

    def _resolve_flag(self, name: str, default: bool) -> None:
        """An on/off option whose ``None`` means "on where it applies": set it to ``default`` then, and refuse
        anything but a bool."""
        if getattr(self, name) is None:
            setattr(self, name, default)
        if not isinstance(getattr(self, name), bool):
            raise ValueError(f"{name} must be True, False or None, got {getattr(self, name)!r}")

    def _needs_averages(self, name: str, what: str) -> None:
        """Refuse an option of the window lines (``what`` says what it does there) when it is on without them."""
        if getattr(self, name) and self.gen_probe_batch != "averages":
            raise ValueError(
                f"{name} {what}; got gen_probe_batch={self.gen_probe_batch!r}: pass gen_probe_batch='averages', or "
                f"{name}=False"
            )

    def _validate_gen(self) -> None:
        if self.gen_mode not in GEN_MODES:
            raise ValueError(f"gen_mode must be one of {GEN_MODES}, got {self.gen_mode!r}")
        probes = self.gen_search_probes
        if isinstance(probes, bool) or not isinstance(probes, int) or probes < 0:
            raise ValueError(f"gen_search_probes must be an integer >= 0 (0 = no fast-start search), got {probes!r}")
        offsets = [float(x) for x in self.gen_probe_offsets]
        if not offsets or any(not math.isfinite(x) or x == 0.0 for x in offsets):
            raise ValueError(
                f"gen_probe_offsets must be non-zero finite multiples of the lr (e.g. [1.0] or [-1.0, 1.0]), "
                f"got {self.gen_probe_offsets!r}"
            )
        if len(set(offsets)) != len(offsets):
            raise ValueError(f"gen_probe_offsets must be distinct, got {self.gen_probe_offsets!r}")
        if not self.gen_use_slope and len(set(offsets)) < 2:
            raise ValueError(
                "gen_use_slope=False fits slope and curvature from the losses: pass at least two probe offsets "
                f"(e.g. [-1.0, 1.0]), got {self.gen_probe_offsets!r}"
            )
        self.gen_probe_offsets = offsets
        if self.gen_probe_batch is None:
            out_of_sample = self.gen_mode == "approx" and offsets == [1.0] and self.gen_use_slope
            self.gen_probe_batch = "averages" if out_of_sample else "same"
        if self.gen_probe_batch not in PROBE_BATCHES:
            raise ValueError(
                f"gen_probe_batch must be one of {', '.join(map(repr, PROBE_BATCHES))}, got {self.gen_probe_batch!r}"
            )
        if self.gen_max_interval is not None and self.gen_probe_batch == "averages":
            raise ValueError(
                f"gen_max_interval={self.gen_max_interval} is the adaptive gap between one-step recomputes "
                "(gen_probe_batch='next' or 'same'); the window lines of gen_probe_batch='averages' are measured once "
                "per window, whatever the gap: set gen_window to measure less often, or pass gen_probe_batch='next' "
                "with gen_max_interval"
            )
        if self.gen_decay is None:
            # The window lines anneal the level themselves; a greedy one-step estimate does not (benchmarks/RESULTS.md)
            self.gen_decay = "none" if self.gen_probe_batch == "averages" else "cosine"
        if self.gen_smooth_by_count is None:
            # A level that follows the lines sooner gains with the window lines and loses with the greedy one-step
            # estimates, biased low over the horizon (benchmarks/RESULTS.md)
            self.gen_smooth_by_count = self.gen_probe_batch == "averages"
        validate_gen_settings(**self.gen_scheduler_settings())
        for name in SCHEME_FLAGS:
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.gen_window is not None and (not isinstance(self.gen_window, int) or self.gen_window < 1):
            raise ValueError(f"gen_window must be a whole number of steps >= 1 (or None), got {self.gen_window!r}")
        if self.gen_fast_start_lines not in FAST_START_LINES:
            raise ValueError(
                "gen_fast_start_lines must be one of "
                f"{', '.join(map(repr, FAST_START_LINES))}, got {self.gen_fast_start_lines!r}"
            )
        self._resolve_flag("gen_jitter_cost", self.gen_probe_batch == "averages")
        self._needs_averages("gen_jitter_cost", "charges the lines through two windows' means of "
                             "gen_probe_batch='averages'")  # fmt: skip
        # The fast start on window lines, which the option below acts on (the charge is on by default there)
        window_start = (
            self.gen_probe_batch == "averages" and self.gen_fast_start and self.gen_fast_start_lines != "next"
        )
        self._resolve_flag("gen_fast_start_jitter", window_start)
        if self.gen_fast_start_jitter and not window_start:
            raise ValueError(
                "gen_fast_start_jitter charges the fast start's lines through two windows' means: it needs "
                "gen_probe_batch='averages', gen_fast_start=True and gen_fast_start_lines 'both' or 'windows' (got "
                f"gen_probe_batch={self.gen_probe_batch!r}, gen_fast_start={self.gen_fast_start!r}, "
                f"gen_fast_start_lines={self.gen_fast_start_lines!r}); pass those, or gen_fast_start_jitter=False"
            )
        if self.gen_probe_batch in ("next", "averages") and (
            self.gen_mode != "approx" or offsets != [1.0] or not self.gen_use_slope
        ):
            raise ValueError(
                f"gen_probe_batch={self.gen_probe_batch!r} is an approx-mode scheme with its own probes (the previous "
                "weights) and the slope from the next backward: use it with gen_mode='approx' and the default "
                "gen_probe_offsets and gen_use_slope"
            )
        self._resolve_flag("gen_undo_lost_windows", self.gen_probe_batch == "averages")
        self._needs_averages("gen_undo_lost_windows", "takes a window back to the previous window's mean, which "
                             "gen_probe_batch='averages' holds")  # fmt: skip
        self._resolve_flag("gen_pace_unit", self.gen_probe_batch == "averages")
        self._needs_averages("gen_pace_unit", "sets the unit of the lines through two windows' means of "
                             "gen_probe_batch='averages'")  # fmt: skip
        self._resolve_flag("gen_kalman_gain", self.gen_probe_batch == "averages")
        self._needs_averages("gen_kalman_gain", "weighs the lines through two windows' means of "
                             "gen_probe_batch='averages'")  # fmt: skip
        if self.gen_tail_average is None:
            # Without a shape the last iterate jitters at the level; the tail's mean anneals it.
            # 0.2 is the cooldown's fraction (Hagele et al., arXiv:2405.18392), not a fitted value.
            no_shape = self.gen_decay == "none" and not self.load_best_model_at_end
            self.gen_tail_average = DEFAULT_TAIL if no_shape else 0.0
        tail = self.gen_tail_average
        if isinstance(tail, bool) or not isinstance(tail, (int, float)) or not 0.0 <= tail <= 1.0:
            raise ValueError(
                f"gen_tail_average must be a fraction of the run in [0, 1] (0 = end on the last iterate, 0.2 = on the "
                f"mean of the last fifth of the steps), got {tail!r}"
            )
        if tail > 0.0 and self.load_best_model_at_end:
            raise ValueError(
                "gen_tail_average ends training on the mean of the last steps' weights, and load_best_model_at_end "
                "would replace it with a checkpoint's: pass one of them, not both"
            )
        if self.uses_gen:
            if self.learning_rate <= 0 or not math.isfinite(self.learning_rate):
                raise ValueError(
                    f"lr_scheduler_type='gen' needs learning_rate > 0 (the starting lr and first probe radius), "
                    f"got {self.learning_rate}"
                )
