"""Tiny real models and data sets for the tests (no network), and the GeN arguments most trainer tests share."""

from __future__ import annotations

import torch
from torch import nn

from hf_gen.trace import read_trace  # noqa: F401  (the tests read traces through the library's reader)


class Quadratic(nn.Module):
    """``L(t) = 1/2 t^T A t - b^T t`` with ``t = (first, second)``: exactly quadratic, Hessian ``A``."""

    def __init__(self, n_first: int = 3, n_second: int = 2, seed: int = 0, dtype=torch.float64):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        n = n_first + n_second
        m = torch.randn(n, n, generator=g, dtype=dtype)
        self.register_buffer("A", m @ m.T / n + 0.5 * torch.eye(n, dtype=dtype))
        self.register_buffer("b", torch.randn(n, generator=g, dtype=dtype))
        self.first = nn.Parameter(torch.randn(n_first, generator=g, dtype=dtype))
        self.second = nn.Parameter(torch.randn(n_second, generator=g, dtype=dtype))

    def theta(self) -> torch.Tensor:
        return torch.cat([self.first, self.second])

    def forward(self, x=None, labels=None, tilt=None):
        """``tilt`` (a batch of vectors, ``Tilted``) adds its mean to ``b``: each batch its own quadratic, one
        Hessian."""
        t = self.theta()
        b = self.b if tilt is None else self.b + tilt.mean(0)
        return {"loss": 0.5 * t @ self.A @ t - b @ t}


class MLP(nn.Module):
    """A small tanh regression network with optional dropout and BatchNorm on the raw input."""

    def __init__(self, n_in=4, hidden=8, dropout=0.0, batchnorm=False, seed=0, dtype=torch.float32):
        super().__init__()
        torch.manual_seed(seed)
        self.norm = nn.BatchNorm1d(n_in, dtype=dtype) if batchnorm else nn.Identity()
        self.l1 = nn.Linear(n_in, hidden, dtype=dtype)
        self.drop = nn.Dropout(dropout)
        self.l2 = nn.Linear(hidden, 1, dtype=dtype)

    def forward(self, x, labels=None):
        y = self.l2(self.drop(torch.tanh(self.l1(self.norm(x))))).squeeze(-1)
        out = {"logits": y}
        if labels is not None:
            out["loss"] = ((y - labels) ** 2).mean()
        return out


class Regression(torch.utils.data.Dataset):
    def __init__(self, n=64, n_in=4, seed=0, dtype=torch.float32):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, n_in, generator=g, dtype=dtype)
        self.y = torch.sin(self.x.sum(1)) + 0.1 * torch.randn(n, generator=g, dtype=dtype)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i]}


class Shifted(Regression):
    """Regression rows whose targets jump by ``shift`` from row ``start`` to row ``stop`` (to the end if ``None``):
    read in order, the loss jumps there."""

    def __init__(self, n, start, shift, stop=None, **kwargs):
        super().__init__(n=n, **kwargs)
        self.y[start:stop] += shift


class Dummy(torch.utils.data.Dataset):
    """Inputs the ``Quadratic`` model ignores (the Trainer needs a data set)."""

    def __init__(self, n=64):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"x": torch.tensor([float(i)])}


class Tilted(Dummy):
    """Rows that tilt the ``Quadratic``'s linear term by seeded noise of scale ``scale``: batch noise, known
    exactly."""

    def __init__(self, n=64, scale=1.0, size=5, seed=0):
        super().__init__(n)
        g = torch.Generator().manual_seed(seed)
        self.tilt = scale * torch.randn(n, size, generator=g, dtype=torch.float64)

    def __getitem__(self, i):
        return {"x": torch.tensor([float(i)]), "tilt": self.tilt[i]}


def tiny_gpt2(seed=0, dropout=0.0, vocab=64):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=vocab,
        n_positions=32,
        n_embd=16,
        n_layer=2,
        n_head=2,
        resid_pdrop=dropout,
        embd_pdrop=dropout,
        attn_pdrop=dropout,
        attn_implementation="eager",
    )
    return GPT2LMHeadModel(config)


class Tokens(torch.utils.data.Dataset):
    """Random token rows with a varying number of padded (-100) label positions."""

    def __init__(self, n=32, length=12, vocab=64, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, vocab, (n, length), generator=g)
        self.lengths = torch.randint(3, length + 1, (n,), generator=g)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        labels = self.ids[i].clone()
        labels[self.lengths[i] :] = -100
        mask = (labels != -100).long()
        return {"input_ids": self.ids[i], "attention_mask": mask, "labels": labels}


def gen_args(tmp_path, **kwargs):
    """GeN arguments for the mechanics tests: same-batch probes (their closed forms are of a step's own line; the
    next-batch fit has its own tests), no decay shape (the cosine shape has its own test), the last iterate at
    the end and no window taken back (the oracles replay the steps; the tail's mean and the undo, defaults with the
    window lines, have their own tests)."""
    from hf_gen import GeNTrainingArguments

    base = dict(
        output_dir=str(tmp_path),
        lr_scheduler_type="gen",
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        logging_steps=1,
        per_device_train_batch_size=4,
        max_steps=6,
        seed=0,
        gen_decay="none",
        gen_probe_batch="same",
        gen_tail_average=0.0,
        gen_undo_lost_windows=False,
    )
    base.update(kwargs)
    return GeNTrainingArguments(**base)


def logged_lrs(trainer):
    return [h["learning_rate"] for h in trainer.state.log_history if "learning_rate" in h]
