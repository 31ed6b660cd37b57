"""GeN inside the Hugging Face ``Trainer``: ``GeNMixin`` and ``GeNTrainer``.

The glue's one job is to give ``hf_gen.core`` the loss along a line, ``g(a)``, and to apply what the core and the
scheduler decide. What the mixin changes, and nothing else:

* ``create_scheduler``: with ``lr_scheduler_type="gen"`` the scheduler is a ``GeNScheduler``, and two
  hooks are put on the optimizer's ``step``.
* ``training_step``: keeps one :class:`StepRecord` per optimizer step: on a step whose batch measures a line, each
  micro-batch with the random state of its forward, and the sum of the training losses.
* ``_clip_grad_norm``: remembers the pre-clip gradient norm, so the slope uses the true gradient.
* the optimizer step: the optimizer steps once, as always, with the current lr, which defines the update direction
  ``d`` (after clipping, momentum, preconditioning and weight decay); the probe scheme decides around it where the
  line is measured. The schemes live in :mod:`hf_gen.schemes`, one class each: ``Averages`` (the default in approx
  mode: the line through two windows' mean weights, on the batch after them), ``NextBatch`` (the step's line on the
  next batch) and ``SameBatch`` (on its own batch, and exact mode). The glue hands them ``g(a)`` (``_gen_line``,
  ``_gen_loss_here``), the slope and loss the training step knows (``_gen_known``) and the reduction over processes.

  A step the optimizer skips (fp16 overflow) makes no GeN update.
* checkpoints: a line still to be measured on the next batch is saved with the checkpoint and restored on
  resume (``_save_optimizer_and_scheduler`` / ``_load_optimizer_and_scheduler``).
* ``log``: adds ``gen/lr``, ``gen/alpha_star``, ``gen/curvature`` and ``gen/fallbacks`` to training logs.

Every GeN update is also written (main process) to ``output_dir/gen_trace.jsonl`` (``hf_gen.trace``).
"""

from __future__ import annotations

import contextlib
import copy
import math
import os

import torch
import torch.distributed as dist
from transformers import Trainer
from transformers.utils import logging

from .core import LineEstimate
from .line import BufferGuard, LineSnapshot, RngState, WindowMeans, reshard
from .scheduler import GeNScheduler
from .schemes import Averages, NextBatch, SameBatch, StepRecord
from .support import DEEPSPEED_REFUSAL, check_engine, check_linear_optimizer, overflowed
from .trace import TRACE_FILE, append_record, make_record, restart_trace

logger = logging.get_logger(__name__)

__all__ = ["GeNMixin", "GeNTrainer", "TRACE_FILE"]

PENDING_LINE_FILE = "gen_pending_line"


class GeNMixin:
    """Adds the generalized Newton's method to any ``Trainer`` subclass: ``class T(GeNMixin, Trainer)``.

    Active when ``args.lr_scheduler_type == "gen"`` (``GeNTrainingArguments``); otherwise the trainer
    behaves exactly like its base class. See the module docstring for the hooks it uses.
    """

    #: Trainer attributes that ``compute_loss`` updates as a side effect (TRL's metric stores); probes restore them.
    gen_probe_restored_attributes: tuple[str, ...] = ("_metrics", "_total_train_tokens")

    def __init__(self, *args, **kwargs) -> None:
        training_args = kwargs.get("args", args[1] if len(args) > 1 else None)
        if getattr(training_args, "uses_gen", False):
            check_engine(training_args)
        super().__init__(*args, **kwargs)
        self._gen_hooks: list = []
        self._gen_step: StepRecord | None = None
        self._gen_scheme = self._gen_new_scheme()
        self._gen_tail: WindowMeans | None = None
        self._gen_trace_checked = False
        self._gen_unit: tuple[float, float] | None = None  # the loss's precision: (computed in, stored in)
        if self.gen_enabled:
            self._gen_check_launch()

    # ---- set-up ------------------------------------------------------------------------------

    @property
    def gen_enabled(self) -> bool:
        """Whether GeN chooses the lr (``args.lr_scheduler_type == "gen"``)."""
        return bool(getattr(self.args, "uses_gen", False))

    def _gen_new_scheme(self) -> SameBatch | NextBatch:
        probe_batch = getattr(self.args, "gen_probe_batch", None)
        if probe_batch == "averages":
            device = "cpu" if self.args.gen_offload_snapshot else None
            return Averages(self.args.gen_window, device, self.args.gen_fast_start_lines,
                            self.args.gen_jitter_cost, self.args.gen_undo_lost_windows,
                            self.args.gen_fast_start_jitter, self.args.gen_pace_unit,
                            self.args.gen_kalman_gain)  # fmt: skip
        return NextBatch() if probe_batch == "next" else SameBatch()

    def _gen_check_launch(self) -> None:
        check_engine(self.args)
        if getattr(self, "is_deepspeed_enabled", False):
            raise ValueError(DEEPSPEED_REFUSAL)
        if self.args.gen_mode == "exact" and self.is_fsdp_enabled:
            raise ValueError(
                "gen_mode='exact' is not supported with FSDP (double backward through sharded parameters is "
                "untested); "
                "use gen_mode='approx', which works on the local shards."
            )
        if self.lr_scheduler is not None:
            raise ValueError(
                "lr_scheduler_type='gen' creates its own scheduler, but one was passed in `optimizers=(optimizer, "
                "scheduler)`: pass `optimizers=(optimizer, None)` or drop lr_scheduler_type='gen'."
            )
        if self.optimizer is not None:
            check_linear_optimizer(self.optimizer)

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        if not self.gen_enabled:
            return super().create_scheduler(num_training_steps, optimizer)
        if self.lr_scheduler is None:
            optimizer = self.optimizer if optimizer is None else optimizer
            inner = check_linear_optimizer(optimizer)
            self.lr_scheduler = GeNScheduler(
                optimizer,
                **self.args.gen_scheduler_settings(),
                num_training_steps=num_training_steps,
                warmup_steps=self.args.get_warmup_steps(num_training_steps),
            )
            self._created_lr_scheduler = True
            for handle in self._gen_hooks:
                handle.remove()
            self._gen_hooks = [
                inner.register_step_pre_hook(self._gen_before_optimizer_step),
                inner.register_step_post_hook(self._gen_after_optimizer_step),
            ]
        return self.lr_scheduler

    def train(self, *args, **kwargs):
        self._gen_trace_checked = False
        self._gen_step = None
        self._gen_scheme = self._gen_new_scheme()
        self._gen_tail = self._gen_new_tail()
        output = super().train(*args, **kwargs)
        self._gen_end_on_tail()
        return output

    # ---- the mean of the last steps' weights (gen_tail_average) ---------------------------------------------------

    def _gen_new_tail(self) -> WindowMeans | None:
        if not self.gen_enabled or not self.args.gen_tail_average > 0.0:
            return None
        return WindowMeans("cpu" if self.args.gen_offload_snapshot else None)

    def _gen_restart_tail(self) -> None:
        """The tail's mean starts again from the next step (the weights it holds were taken back)."""
        if self._gen_tail is not None and self._gen_tail.count > 0:
            self._gen_tail = self._gen_new_tail()

    def _gen_in_tail(self) -> bool:
        """Whether the optimizer step just taken is one of the last ``ceil(gen_tail_average * T)`` (at least one)."""
        total = self.lr_scheduler.num_training_steps or 0
        steps = max(1, math.ceil(self.args.gen_tail_average * total))
        return self.lr_scheduler.last_epoch >= total - steps

    def _gen_end_on_tail(self) -> None:
        """Set the trainable parameters to the mean of the tail's weights: after the optimizer's last step, before the
        Trainer evaluates and saves at that step (the checkpoints saved before it keep the live weights); or when
        ``train()`` returns, if the run stopped early inside the tail."""
        tail, self._gen_tail = self._gen_tail, None
        if tail is None or tail.count == 0:
            return
        count, mean = tail.count, tail.close()
        WindowMeans.put(self._gen_params(self.optimizer), mean)
        logger.info("GeN: the model is the mean of the weights after the last %d optimizer steps", count)

    # ---- the next-batch line across a checkpoint -------------------------------------------------

    def _gen_pending_file(self, folder: str) -> str:
        return os.path.join(folder, f"{PENDING_LINE_FILE}-rank{self.args.process_index}.pt")

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        super()._save_optimizer_and_scheduler(output_dir)
        state = self._gen_scheme.state() if self.gen_enabled else None
        if self._gen_tail is not None:
            state = {**(state or {}), "tail": self._gen_tail.local_state()}
        if state is not None:
            # With gen_probe_batch="next" the line of the step just taken is measured on the next batch: each rank
            # keeps its copy of the weights before that step (its own shards under FSDP2) with the checkpoint.
            os.makedirs(output_dir, exist_ok=True)
            torch.save(state, self._gen_pending_file(output_dir))

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        self._gen_scheme = self._gen_new_scheme()
        if self.gen_enabled and checkpoint is not None and os.path.isfile(self._gen_pending_file(checkpoint)):
            saved = torch.load(self._gen_pending_file(checkpoint), weights_only=True)
            tail = saved.pop("tail", None)
            if saved:
                self._gen_scheme.load_state(self, saved)
            if tail is not None and self._gen_tail is not None:
                self._gen_tail.load_local_state(self._gen_params(check_linear_optimizer(self.optimizer)), tail)

    # ---- recording the step's batch -----------------------------------------------------------

    def _gen_start_trace(self) -> None:
        """At the first step of a ``train()`` call: keep the trace records up to the step it starts from.

        A resumed (or restarted) run replaces what an earlier run wrote after its checkpoint; a fresh run starts an
        empty trace.
        """
        self._gen_trace_checked = True
        if self.is_world_process_zero():
            restart_trace(self.args.output_dir, self.state.global_step)

    def training_step(self, model, inputs, num_items_in_batch=None):
        if not self.gen_enabled or not isinstance(self.lr_scheduler, GeNScheduler):
            return super().training_step(model, inputs, num_items_in_batch)
        if not self._gen_trace_checked:
            self._gen_start_trace()
        record = self._gen_step
        if record is None or record.complete:
            record = self._gen_step = StepRecord(measures=self._gen_scheme.measures(self))
        if record.measures:
            record.batch.append((inputs, RngState(self.args.device)))
            record.num_items = num_items_in_batch
        loss = super().training_step(model, inputs, num_items_in_batch)
        loss0 = loss.detach().to(torch.float64)  # kept on the device: read only where a line or a window needs it
        record.loss = loss0 if record.loss is None else record.loss + loss0
        if self.accelerator.sync_gradients:
            record.complete = True
        return loss

    def _clip_grad_norm(self, model):
        grad_norm = super()._clip_grad_norm(model)
        if self._gen_step is not None:
            self._gen_step.grad_norm = grad_norm
        return grad_norm

    def _gen_clip_factor(self, record: StepRecord) -> torch.Tensor | float:
        """The factor ``torch.nn.utils.clip_grad_norm_`` multiplied the gradients by (1 without clipping)."""
        if record.grad_norm is None or not self.args.max_grad_norm or self.args.max_grad_norm <= 0:
            return 1.0
        norm = record.grad_norm
        if hasattr(norm, "full_tensor"):
            norm = norm.full_tensor()
        norm = torch.as_tensor(norm, dtype=torch.float64)
        return torch.clamp(self.args.max_grad_norm / (norm + 1e-6), max=1.0)

    def _gen_precision(self, record: StepRecord) -> float | torch.Tensor:
        """The smallest change of the record's loss a line resolves, relative to the loss (``hf_gen.core.fit_line``).

        The loss is a number in the trainable parameters' precision (float32 under bf16/fp16 autocast), resolved to its
        unit roundoff ``u_out``, and is computed in the autocast dtype's precision ``u`` (else the parameters'): a loss
        that averages ``N`` terms (``num_items_in_batch``, the tokens or examples the Trainer counts, the same on every
        rank; else a full batch's examples per process) averages their rounding errors down by ``sqrt(N)``. So
        ``max(u_out, u / sqrt(N))``; measured against float32 in docs/internals.md.
        """
        if self._gen_unit is None:
            dtypes = {p.dtype for p in self.model.parameters() if p.requires_grad and p.is_floating_point()}
            out = torch.finfo(max(dtypes, key=lambda d: torch.finfo(d).eps, default=torch.float32)).eps / 2
            compute = torch.finfo(torch.bfloat16).eps / 2 if self.args.bf16 else out
            compute = torch.finfo(torch.float16).eps / 2 if self.args.fp16 else compute
            self._gen_unit = (max(out, compute), out)
        compute, out = self._gen_unit
        if torch.is_tensor(record.num_items):  # on the device: kept there, the core reads it with the probes
            terms = record.num_items.detach().to(torch.float64).clamp(min=1.0)
            return torch.clamp(compute * terms.rsqrt(), min=out)
        if record.num_items is not None:
            terms = float(record.num_items)
        else:  # the examples of a full effective batch per process: the same number on every rank
            terms = self.args.per_device_train_batch_size * self.args.gradient_accumulation_steps
        return max(out, compute / math.sqrt(max(1.0, terms)))

    # ---- the optimizer-step hooks ----------------------------------------------------------------

    def _gen_params(self, optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
        return [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]

    def _gen_snapshot(self, optimizer: torch.optim.Optimizer) -> LineSnapshot:
        """A copy of the trainable parameters before the optimizer's step, at the lr of group 0 it is about to take."""
        device = "cpu" if self.args.gen_offload_snapshot else None
        a0 = float(optimizer.param_groups[0]["lr"])
        return LineSnapshot(self._gen_params(optimizer), a0, device=device)

    def _gen_before_optimizer_step(self, optimizer, args, kwargs) -> None:
        record = self._gen_step
        measured = record is not None and record.measures and bool(record.batch)
        if not (measured or self._gen_scheme.wants_hook(self)) or overflowed(optimizer):
            return  # the overflow check syncs with the device: only when there is work
        self._gen_scheme.before_step(self, record, optimizer)

    def _gen_after_optimizer_step(self, optimizer, args, kwargs) -> None:
        record, self._gen_step = self._gen_step, None
        self._gen_scheme.after_any_step(self, optimizer, record)
        if self._gen_tail is not None and self._gen_in_tail():
            self._gen_tail.add(self._gen_params(optimizer))
        if record is not None and record.measures:
            self._gen_scheme.after_step(self, record)
        total = self.lr_scheduler.num_training_steps
        if self._gen_tail is not None and total and self.lr_scheduler.last_epoch + 1 >= total:
            # The run's last step: the Trainer's last evaluation, checkpoint and save (and what they log) see the mean.
            self._gen_end_on_tail()

    # ---- measuring the line ------------------------------------------------------------------------

    def _gen_known(self, record: StepRecord, snapshot: LineSnapshot, at: float) -> tuple[torch.Tensor, torch.Tensor]:
        """What the training step measured on the record's batch at the live weights (the point ``at`` of the
        snapshot's line): the slope ``<grad, d>`` (with the gradient before clipping) and the loss, reduced over
        processes, as 0-d float64 tensors (not read yet: the host waits once, after the probes are queued)."""
        slope = snapshot.slope_numerator([p.grad for p in snapshot.params])
        if slope is None:
            slope = torch.zeros((), dtype=torch.float64, device=self.args.device)
        slope = self._gen_reduce(slope) / (at * self._gen_clip_factor(record))
        return slope, self._gen_reduce(record.loss)

    def _gen_line(self, record: StepRecord, snapshot: LineSnapshot):
        """``g(a)`` for ``hf_gen.core``: the weights moved to the point ``a`` of the snapshot's line, and the loss of
        the record's batch there."""

        def g(a: float) -> torch.Tensor:
            snapshot.move_to(a)
            return self._gen_loss_here(record)

        return g

    def _gen_loss_here(self, record: StepRecord) -> torch.Tensor:
        """The loss of the record's whole batch at the current weights, reduced over processes (a 0-d tensor)."""
        return self._gen_reduce(self._gen_batch_loss(record))

    def _gen_scaled_loss(self, model, inputs, num_items) -> torch.Tensor:
        """The loss of one micro-batch, normalised exactly as ``Trainer.training_step`` normalises it."""
        inputs = self._prepare_inputs(inputs)
        with self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs, num_items_in_batch=num_items)
        if self.args.n_gpu > 1:
            loss = loss.mean()
        scaled = getattr(self, "loss_is_scaled_for_ga", None)  # absent from older Trainers, which use the rule below
        if scaled is None:
            scaled = (self.model_accepts_loss_kwargs and num_items is not None) or self.compute_loss_func is not None
        if not scaled:
            loss = loss / self.current_gradient_accumulation_steps
        return loss

    @contextlib.contextmanager
    def _gen_side_effects_undone(self):
        """Probes call ``compute_loss``; some trainers record metrics there (TRL's token counts, entropy, accuracy).

        The attributes named in ``gen_probe_restored_attributes`` are copied before the probes and put back after,
        so that the logs count training forwards only.
        """
        saved = {name: copy.deepcopy(getattr(self, name)) for name in self.gen_probe_restored_attributes
                 if hasattr(self, name)}  # fmt: skip
        try:
            yield
        finally:
            for name, value in saved.items():
                setattr(self, name, value)

    def _gen_replayed_losses(self, record: StepRecord, grad: bool):
        """Each micro-batch's loss at the current weights, normalised like the training loss, with its forward's
        random state (same dropout masks); module buffers are put back after each, and trainer metrics after all."""
        model = self.model
        guard = BufferGuard(model)
        model.train()
        for inputs, rng in record.batch:
            with rng.replay(), torch.set_grad_enabled(grad), self._gen_side_effects_undone():
                yield self._gen_scaled_loss(model, inputs, record.num_items)
            guard.restore()

    def _gen_batch_loss(self, record: StepRecord) -> torch.Tensor:
        """Loss on the whole effective batch at the current weights, without gradients."""
        total = torch.zeros((), dtype=torch.float64, device=self.args.device)
        for loss in self._gen_replayed_losses(record, grad=False):
            total = total + loss.detach().to(torch.float64)
        reshard(self.model)
        return total

    def _gen_curvature(self, record: StepRecord, params: list, step_vector: list[torch.Tensor]) -> torch.Tensor:
        """``s^T H s`` for the step ``s`` on the whole effective batch, by double backward."""
        total = torch.zeros((), dtype=torch.float64, device=self.args.device)
        for loss in self._gen_replayed_losses(record, grad=True):
            grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
            pairs = [(g, s) for g, s in zip(grads, step_vector, strict=True) if g is not None]
            directional = sum((g * s).sum() for g, s in pairs)
            if torch.is_tensor(directional) and directional.requires_grad:
                hvp = torch.autograd.grad(
                    directional, [params[i] for i, g in enumerate(grads) if g is not None], allow_unused=True
                )
                for h, (_, s) in zip(hvp, pairs, strict=True):
                    if h is not None:
                        total = total + (h.detach().to(torch.float64) * s.to(torch.float64)).sum()
        return total

    def _gen_reduce(self, value: torch.Tensor | None) -> torch.Tensor:
        """Average a per-rank scalar (0-d; a one-element tensor becomes one) or vector over processes, in float64 (a
        value that is already global stays as it is)."""
        if value is None:
            value = torch.tensor(float("nan"), dtype=torch.float64, device=self.args.device)
        value = value.to(device=self.args.device, dtype=torch.float64)
        if value.numel() == 1:
            value = value.reshape(())
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            value = value.clone()
            dist.all_reduce(value, op=dist.ReduceOp.SUM)
            value = value / dist.get_world_size()
        return value

    # ---- reporting ---------------------------------------------------------------------------------

    def _gen_write_trace(self, estimate: LineEstimate, new_lr: float, lr0: float, mode: str, extra: dict) -> None:
        if not self.is_world_process_zero():
            return
        record = make_record(
            step=self.state.global_step + 1,
            lr=new_lr,
            estimate=estimate,
            probe_lr=lr0,
            mode=mode,
            fallback=self.lr_scheduler.last_fallback,
            interval=self.lr_scheduler.interval_in_force,
            **extra,
        )
        append_record(self.args.output_dir, record)

    def gen_metrics(self) -> dict[str, float]:
        """The latest GeN quantities as floats, for the Trainer's logs (empty before the first update)."""
        scheduler = self.lr_scheduler
        if not isinstance(scheduler, GeNScheduler) or scheduler.num_updates == 0:
            return {}
        metrics = {"gen/lr": float(scheduler.last_update_lr), "gen/fallbacks": float(scheduler.num_fallbacks)}
        for key, value in (("gen/alpha_star", scheduler.last_alpha_star), ("gen/curvature", scheduler.last_curvature)):
            if value is not None and math.isfinite(value):
                metrics[key] = float(value)
        return metrics

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        if self.gen_enabled and "learning_rate" in logs:
            logs = {**logs, **self.gen_metrics()}
        return super().log(logs, *args, **kwargs)


class GeNTrainer(GeNMixin, Trainer):
    """``transformers.Trainer`` whose lr is chosen by the generalized Newton's method.

    Use with ``GeNTrainingArguments(lr_scheduler_type="gen", ...)``. See ``GeNMixin`` for what changes.
    """
