"""What GeN can drive: optimizers whose update is linear in the lr, engines that step after backward."""

from __future__ import annotations

import os

import torch
from transformers.optimization import Adafactor

__all__ = ["LINEAR_OPTIMIZERS", "REFUSED_OPTIM_NAMES", "check_engine", "check_linear_optimizer", "overflowed"]

# Optimizers whose step is linear in the lr: theta1 = theta0 - lr * d with d independent of lr.
LINEAR_OPTIMIZERS = (
    torch.optim.SGD,
    torch.optim.Adam,
    torch.optim.AdamW,
    torch.optim.Adagrad,
    torch.optim.RMSprop,
    torch.optim.Adamax,
    torch.optim.NAdam,
    torch.optim.RAdam,
    Adafactor,
)
# `TrainingArguments.optim` values that step inside backward or whose update is not linear in the lr.
REFUSED_OPTIM_NAMES = {
    "lomo": "steps inside backward, before an lr could be measured",
    "adalomo": "steps inside backward, before an lr could be measured",
    "galore_adamw_layerwise": "steps inside backward hooks",
    "galore_adamw_8bit_layerwise": "steps inside backward hooks",
    "galore_adafactor_layerwise": "steps inside backward hooks",
    "apollo_adamw_layerwise": "steps inside backward hooks",
    "schedule_free_adamw": "its averaging weights depend non-linearly on the lr",
    "schedule_free_radam": "its averaging weights depend non-linearly on the lr",
    "schedule_free_sgd": "its averaging weights depend non-linearly on the lr",
}
_SUPPORTED_TEXT = (
    "torch.optim SGD (momentum, Nesterov, weight decay), Adam, AdamW, Adagrad, RMSprop, Adamax, NAdam, RAdam, "
    "and transformers' Adafactor with relative_step=False (TrainingArguments.optim: adamw_torch, "
    "adamw_torch_fused, sgd, adagrad, rmsprop, adafactor)"
)


def _inner_optimizer(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The torch optimizer under accelerate's ``AcceleratedOptimizer`` wrappers."""
    while hasattr(optimizer, "optimizer") and isinstance(optimizer.optimizer, torch.optim.Optimizer):
        optimizer = optimizer.optimizer
    return optimizer


def check_linear_optimizer(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Return the inner torch optimizer if its update is linear in the lr; raise ``ValueError`` if not."""
    inner = _inner_optimizer(optimizer)
    name = type(inner).__name__
    if type(inner) not in LINEAR_OPTIMIZERS:
        raise ValueError(
            f"lr_scheduler_type='gen' needs an optimizer whose update is linear in the learning rate; {name} is not "
            f"known to be (Prodigy, D-Adaptation, schedule-free and LOMO adapt or fold in the lr themselves). "
            f"Supported: {_SUPPORTED_TEXT}."
        )
    if isinstance(inner, Adafactor) and any(group.get("relative_step") for group in inner.param_groups):
        raise ValueError(
            "lr_scheduler_type='gen' cannot drive Adafactor with relative_step=True (it computes its own lr): "
            "create it with relative_step=False, scale_parameter=False, warmup_init=False, or use optim='adafactor'."
        )
    return inner


DEEPSPEED_REFUSAL = (
    "lr_scheduler_type='gen' is not supported with DeepSpeed: its optimizer steps inside backward, before GeN can "
    "measure the line. Use DDP or FSDP (fsdp=True), or another lr scheduler."
)


def check_engine(args) -> None:
    """Refuse, before anything is built, the launches GeN cannot serve."""
    optim = str(getattr(args.optim, "value", args.optim))
    if optim in REFUSED_OPTIM_NAMES:
        raise ValueError(
            f"lr_scheduler_type='gen' cannot drive optim={optim!r}: it {REFUSED_OPTIM_NAMES[optim]}. "
            f"Use one of: {_SUPPORTED_TEXT}."
        )
    if args.deepspeed or os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() in ("1", "true", "yes"):
        raise ValueError(DEEPSPEED_REFUSAL)


def overflowed(optimizer: torch.optim.Optimizer) -> bool:
    """Whether a GradScaler found inf/nan gradients for this step.

    Optimizers with their own amp support (fused Adam/AdamW/SGD, the Trainer's default ``adamw_torch_fused``) are
    called by the scaler even on overflow, with ``found_inf`` set on them, and skip the update internally; other
    optimizers are not called at all. Either way such a step makes no GeN update.
    """
    found_inf = getattr(optimizer, "found_inf", None)
    return found_inf is not None and bool(found_inf.item() > 0)
