"""hf-gen: the generalized Newton's method (GeN, Bu & Xu, arXiv:2407.02772) as a learning-rate method for the
Hugging Face Trainer."""

from .args import GeNTrainingArguments
from .core import LineEstimate, estimate_from_curvature, estimate_from_losses, fit_parabola
from .scheduler import GeNEstimateError, GeNScheduler
from .support import check_linear_optimizer
from .trainer import GeNMixin, GeNTrainer

__version__ = "0.1.0"

__all__ = [
    "GeNEstimateError",
    "GeNMixin",
    "GeNScheduler",
    "GeNTrainer",
    "GeNTrainingArguments",
    "LineEstimate",
    "check_linear_optimizer",
    "estimate_from_curvature",
    "estimate_from_losses",
    "fit_parabola",
]
