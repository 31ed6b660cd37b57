"""GeN inside the Hugging Face ``Trainer``: ``GeNMixin`` and ``GeNTrainer``.

What the mixin changes, and nothing else:

* ``create_scheduler``: with ``lr_scheduler_type="gen"`` the scheduler is a ``GeNScheduler``, and two
  hooks are put on the optimizer's ``step``.
* ``training_step``: on a recompute step, remembers each micro-batch of the optimizer step with the
  random state of its forward, and sums the training losses (the loss at the current weights).
* ``_clip_grad_norm``: remembers the pre-clip gradient norm, so the slope uses the true gradient.
* the optimizer step: the pre-hook copies the trainable parameters (``theta0``); the optimizer then
  steps once, as always, with the current lr, which defines the update direction ``d`` (after
  clipping, momentum, preconditioning and weight decay). Out of sample (``gen_probe_batch="next"``, the
  default in approx mode) the line is measured in the next step's pre-hook, on that step's batch, and the
  estimate sets that step's lr; the first step's post-hook only checks that the step lowers its own batch's
  loss. On the same batch (``"same"``, and exact mode) the post-hook measures the line (loss at probe points
  or a Hessian-vector product), asks the scheduler for the new lr and sets the weights to
  ``theta0 - lr_new * d`` from the copy. A step the optimizer skips (fp16 overflow) makes no GeN update.
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

from .core import LineEstimate, estimate_from_curvature, estimate_from_losses, fit_parabola
from .line import BufferGuard, LineSnapshot, RngState, reshard
from .scheduler import GeNEstimateError, GeNScheduler, LineSearch
from .support import DEEPSPEED_REFUSAL, check_engine, check_linear_optimizer, overflowed
from .trace import TRACE_FILE, append_record, make_record, restart_trace

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
        self._gen_batch: list[tuple[dict, RngState]] = []
        self._gen_num_items = None
        self._gen_loss0: torch.Tensor | None = None
        self._gen_recording = False
        self._gen_step_open = False
        self._gen_grad_norm = None
        self._gen_snapshot: LineSnapshot | None = None
        self._gen_pending: tuple[LineSnapshot, float] | None = None
        self._gen_trace_checked = False
        if self.gen_enabled:
            self._gen_check_launch()

    # ---- set-up ------------------------------------------------------------------------------

    @property
    def gen_enabled(self) -> bool:
        """Whether GeN chooses the lr (``args.lr_scheduler_type == "gen"``)."""
        return bool(getattr(self.args, "uses_gen", False))

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
            args = self.args
            self.lr_scheduler = GeNScheduler(
                optimizer,
                interval=args.gen_interval,
                max_interval=args.gen_max_interval,
                gamma=args.gen_gamma,
                max_change=args.gen_max_change,
                lr_min=args.gen_lr_min,
                lr_max=args.gen_lr_max,
                fallback=args.gen_fallback,
                fast_start=args.gen_fast_start,
                fast_decrease=args.gen_fast_decrease,
                decay=args.gen_decay,
                num_training_steps=num_training_steps,
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
        self._gen_pending = None
        return super().train(*args, **kwargs)

    # ---- the next-batch line across a checkpoint -------------------------------------------------

    def _gen_pending_file(self, folder: str) -> str:
        return os.path.join(folder, f"{PENDING_LINE_FILE}-rank{self.args.process_index}.pt")

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        super()._save_optimizer_and_scheduler(output_dir)
        if self.gen_enabled and self._gen_pending is not None:
            # With gen_probe_batch="next" the line of the step just taken is measured on the next batch: each rank
            # keeps its copy of the weights before that step (its own shards under FSDP2) with the checkpoint.
            snapshot, lr0 = self._gen_pending
            os.makedirs(output_dir, exist_ok=True)
            torch.save({"lr0": lr0, "theta0": snapshot.local_state()}, self._gen_pending_file(output_dir))

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        self._gen_pending = None
        if self.gen_enabled and checkpoint is not None and os.path.isfile(self._gen_pending_file(checkpoint)):
            saved = torch.load(self._gen_pending_file(checkpoint), weights_only=True)
            device = "cpu" if self.args.gen_offload_snapshot else None
            params = self._gen_params(check_linear_optimizer(self.optimizer))
            self._gen_pending = (LineSnapshot.from_local_state(params, saved["theta0"], device), saved["lr0"])

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
        if not self._gen_step_open:
            self._gen_step_open = True
            self._gen_batch = []
            self._gen_loss0 = None
            self._gen_grad_norm = None
            if self.args.gen_probe_batch == "next":
                # The first step is also recorded: its own batch can veto a starting lr that overshoots.
                first = self.lr_scheduler.last_epoch == 0 and self.args.gen_search_probes > 0
                self._gen_recording = self._gen_pending is not None or first
            else:
                self._gen_recording = self.lr_scheduler.is_due(self.lr_scheduler.last_epoch)
        if self._gen_recording:
            self._gen_batch.append((inputs, RngState(self.args.device)))
            self._gen_num_items = num_items_in_batch
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self._gen_recording:
            loss0 = loss.detach().to(torch.float64)
            self._gen_loss0 = loss0 if self._gen_loss0 is None else self._gen_loss0 + loss0
        if self.accelerator.sync_gradients:
            self._gen_step_open = False
        return loss

    def _clip_grad_norm(self, model):
        grad_norm = super()._clip_grad_norm(model)
        if self._gen_recording:
            self._gen_grad_norm = grad_norm
        return grad_norm

    def _gen_clip_factor(self) -> torch.Tensor | float:
        """The factor ``torch.nn.utils.clip_grad_norm_`` multiplied the gradients by (1 without clipping)."""
        if self._gen_grad_norm is None or not self.args.max_grad_norm or self.args.max_grad_norm <= 0:
            return 1.0
        norm = self._gen_grad_norm
        if hasattr(norm, "full_tensor"):
            norm = norm.full_tensor()
        norm = torch.as_tensor(norm, dtype=torch.float64)
        return torch.clamp(self.args.max_grad_norm / (norm + 1e-6), max=1.0)

    # ---- the optimizer-step hooks ----------------------------------------------------------------

    def _gen_params(self, optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
        return [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]

    def _gen_before_optimizer_step(self, optimizer, args, kwargs) -> None:
        next_batch = self.args.gen_probe_batch == "next"
        wanted = (self._gen_recording and self._gen_batch) or (
            next_batch
            and (self._gen_pending is not None or self.lr_scheduler.is_due(self.lr_scheduler.last_epoch + 1))
        )
        if not wanted or overflowed(optimizer):  # the overflow check syncs with the device: only when needed
            return
        device = "cpu" if self.args.gen_offload_snapshot else None
        if next_batch:
            if self._gen_pending is not None and self._gen_recording and self._gen_batch:
                self._gen_fit_on_next_batch(optimizer)
            if self.lr_scheduler.is_due(self.lr_scheduler.last_epoch + 1):
                lr0 = float(optimizer.param_groups[0]["lr"])
                self._gen_pending = (LineSnapshot(self._gen_params(optimizer), device=device), lr0)
        elif self._gen_recording and self._gen_batch:
            self._gen_snapshot = LineSnapshot(self._gen_params(optimizer), device=device)

    def _gen_fit_on_next_batch(self, optimizer) -> None:
        """Out-of-sample fit of the previous step's line on this step's batch, before this step's update.

        The live weights are ``theta1`` (the previous step landed there, at ``lr0``). Along ``d`` the loss of this
        batch is known at ``theta1`` (the training forward) with its slope (the backward), and one forward at
        ``theta0`` gives the third number; the estimate is measured from ``theta0`` and sets this step's lr.
        """
        (snapshot, lr0), self._gen_pending = self._gen_pending, None
        scheduler: GeNScheduler = self.lr_scheduler
        slope = snapshot.slope_numerator([p.grad for p in snapshot.params])
        if slope is None:
            slope = torch.zeros((), dtype=torch.float64, device=self.args.device)
        slope = self._gen_reduce(slope) / (lr0 * self._gen_clip_factor())
        loss1 = self._gen_reduce(self._gen_loss0)
        snapshot.swap()
        loss0 = self._gen_reduce(self._gen_batch_loss())
        snapshot.swap()
        snapshot.theta0 = []
        slope1, loss1, loss0 = torch.stack([slope, loss1, loss0]).tolist()
        if all(math.isfinite(v) for v in (slope1, loss1, loss0)):
            _, _, curvature = fit_parabola([-lr0], [loss0], loss0=loss1, slope=slope1)
            estimate = estimate_from_curvature(slope1 + curvature * lr0, curvature, loss0=loss0)
        else:
            estimate = LineEstimate(None, slope1, math.nan, loss0, False, "nonfinite_loss")
        new_lr = scheduler.apply_estimate(estimate, scheduler.last_epoch)
        record = {
            "probe_batch": "next",
            "probe_losses": [[0.0, loss0], [lr0, loss1]],
        }
        self._gen_batch = []
        self._gen_write_trace(estimate, new_lr, lr0, "approx", record)

    def _gen_after_optimizer_step(self, optimizer, args, kwargs) -> None:
        snapshot, self._gen_snapshot = self._gen_snapshot, None
        recorded, self._gen_recording = self._gen_recording and bool(self._gen_batch), False
        if snapshot is None:
            if recorded and self._gen_pending is not None and self.lr_scheduler.last_epoch == 0:
                self._gen_check_first_step()
            return
        scheduler: GeNScheduler = self.lr_scheduler
        step = scheduler.last_epoch
        lr0 = float(optimizer.param_groups[0]["lr"])
        mode = self.args.gen_mode
        slope = snapshot.slope_numerator([p.grad for p in snapshot.params])
        if slope is None:
            slope = torch.zeros((), dtype=torch.float64, device=self.args.device)
        slope = self._gen_reduce(slope) / (lr0 * self._gen_clip_factor())
        loss0 = self._gen_reduce(self._gen_loss0)
        record: dict = {}
        radius = ceiling = None
        if mode == "exact":
            step_vector = snapshot.return_to_start()
            curvature = self._gen_reduce(self._gen_curvature(snapshot.params, step_vector)) / lr0**2
            slope, curvature, loss0 = torch.stack([slope, curvature, loss0]).tolist()
            estimate = estimate_from_curvature(slope, curvature, loss0=loss0)
        else:
            offsets = list(self.args.gen_probe_offsets)
            if offsets != [1.0]:
                snapshot.keep_theta1()
            losses = []
            for offset in offsets:
                snapshot.move_to(offset)
                losses.append(self._gen_reduce(self._gen_batch_loss()))
            slope, loss0, *losses = torch.stack([slope, loss0, *losses]).tolist()
            points = [offset * lr0 for offset in offsets]
            use_slope = slope if self.args.gen_use_slope else None
            estimate = estimate_from_losses(points, losses, loss0=loss0, slope=use_slope)
            record["probe_batch"] = "same"
            record["probe_losses"] = [[a, v] for a, v in zip(points, losses, strict=True)]
            if offsets == [1.0] and use_slope is not None:
                estimate, radius, ceiling = self._gen_search(snapshot, scheduler, estimate, lr0, loss0, slope, record)
        try:
            new_lr = scheduler.apply_estimate(estimate, step, radius=radius, ceiling=ceiling)
        except GeNEstimateError:
            snapshot.finish(1.0)  # gen_fallback="error": leave the weights where the optimizer's step put them
            raise
        snapshot.finish(new_lr / lr0)
        self._gen_batch = []
        self._gen_write_trace(estimate, new_lr, lr0, mode, record)

    def _gen_check_first_step(self) -> None:
        """Out-of-sample probing leaves the first step to the starting lr: its own batch may still veto it.

        A step that does not lower the loss even on the batch that produced it (in sample, where a step looks
        better than it is) overshot. Until it does, the step is cut ``gen_max_change**3``-fold along its line (one
        no-grad forward each, at most ``gen_search_probes``); the lr is then restarted at the radius kept, which
        the next batch measures from there on. A step that passes costs one forward, once.
        """
        snapshot, lr0 = self._gen_pending
        scheduler: GeNScheduler = self.lr_scheduler
        loss0 = float(self._gen_reduce(self._gen_loss0))
        radius, probes = lr0, []
        for _ in range(self.args.gen_search_probes):
            loss = float(self._gen_reduce(self._gen_batch_loss()))
            probes.append([radius, loss])
            if math.isfinite(loss) and loss < loss0:
                break
            radius /= scheduler.max_change**3
            snapshot.move_to(radius / lr0)
        self._gen_batch = []
        if radius == lr0:
            return
        self._gen_pending = (snapshot, radius)
        new_lr = scheduler.restart(radius, scheduler.last_epoch, reason="overshot")
        estimate = LineEstimate(None, math.nan, math.nan, loss0, False, "overshot")
        self._gen_write_trace(estimate, new_lr, lr0, "approx", {"probe_batch": "same", "probe_losses": probes})

    def _gen_search(self, snapshot, scheduler, estimate, lr0: float, loss0: float, slope: float, record: dict):
        """Fast-start line search: re-probe the same line until the estimate lands near its own probe.

        Runs only while the scheduler's fast start has not settled and at most ``gen_search_probes`` times; each
        probe is one no-grad forward on the step's batch at the radius :class:`LineSearch` picks, and the parabola
        is refitted from that point alone (with the known ``loss0`` and slope). Returns the estimate to apply, the
        radius it was measured at and the ceiling from failed probes (``None, None`` when no extra probe ran).
        """
        search = LineSearch(scheduler, estimate, lr0)
        probes = 0
        while probes < self.args.gen_search_probes:
            target = search.propose()
            if target is None:
                break
            snapshot.move_to(target / lr0)
            loss = float(self._gen_reduce(self._gen_batch_loss()))
            search.observe(estimate_from_losses([target], [loss], loss0=loss0, slope=slope), target)
            record["probe_losses"].append([target, loss])
            probes += 1
        if probes == 0:
            return estimate, None, None
        return search.result()

    # ---- measuring the line ------------------------------------------------------------------------

    def _gen_scaled_loss(self, model, inputs) -> torch.Tensor:
        """The loss of one micro-batch, normalised exactly as ``Trainer.training_step`` normalises it."""
        inputs = self._prepare_inputs(inputs)
        num_items = self._gen_num_items
        with self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs, num_items_in_batch=num_items)
        if self.args.n_gpu > 1:
            loss = loss.mean()
        scaled = self.loss_is_scaled_for_ga
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

    def _gen_batch_loss(self) -> torch.Tensor:
        """Loss on the whole effective batch at the current weights: no grad, same dropout masks, buffers kept."""
        model = self.model
        guard = BufferGuard(model)
        total = torch.zeros((), dtype=torch.float64, device=self.args.device)
        model.train()
        for inputs, rng in self._gen_batch:
            with rng.replay(), torch.no_grad(), self._gen_side_effects_undone():
                total = total + self._gen_scaled_loss(model, inputs).detach().to(torch.float64)
            guard.restore()
        reshard(model)
        return total

    def _gen_curvature(self, params: list[torch.Tensor], step_vector: list[torch.Tensor]) -> torch.Tensor:
        """``s^T H s`` for the step ``s`` on the whole effective batch, by double backward."""
        model = self.model
        guard = BufferGuard(model)
        total = torch.zeros((), dtype=torch.float64, device=self.args.device)
        model.train()
        for inputs, rng in self._gen_batch:
            with rng.replay(), torch.enable_grad(), self._gen_side_effects_undone():
                loss = self._gen_scaled_loss(model, inputs)
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
            guard.restore()
        return total

    def _gen_reduce(self, value: torch.Tensor | None) -> torch.Tensor:
        """Average a per-rank scalar over processes (a value that is already global stays as it is)."""
        if value is None:
            value = torch.tensor(float("nan"), dtype=torch.float64, device=self.args.device)
        value = value.to(device=self.args.device, dtype=torch.float64).reshape(())
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
