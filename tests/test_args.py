"""Arguments, command-line parsing and refusals: bad input fails early with a message saying what to pass."""

import pytest
import torch
from transformers import HfArgumentParser, Trainer
from transformers.optimization import Adafactor
from transformers.trainer_utils import SchedulerType

from hf_gen import GeNTrainer, GeNTrainingArguments

from tiny import MLP, Regression


def args(tmp_path, **kwargs):
    base = dict(output_dir=str(tmp_path), lr_scheduler_type="gen", report_to="none", use_cpu=True, max_steps=2)
    base.update(kwargs)
    return GeNTrainingArguments(**base)


def test_gen_is_accepted_and_stock_names_still_work(tmp_path):
    a = args(tmp_path)
    assert a.lr_scheduler_type == "gen" and a.uses_gen
    b = args(tmp_path, lr_scheduler_type="cosine")
    assert not b.uses_gen and b.lr_scheduler_type.value == "cosine"


def test_command_line_lr_scheduler_gen_and_gen_flags(tmp_path):
    parser = HfArgumentParser(GeNTrainingArguments)
    (parsed,) = parser.parse_args_into_dataclasses(
        [
            "--output_dir", str(tmp_path), "--lr_scheduler", "gen", "--gen_interval", "8", "--gen_mode", "exact",
            "--gen_probe_offsets", "-1", "1", "--gen_use_slope", "false", "--use_cpu",
        ]
    )  # fmt: skip
    assert parsed.uses_gen and parsed.gen_interval == 8 and parsed.gen_mode == "exact"
    assert parsed.gen_probe_offsets == [-1.0, 1.0] and parsed.gen_use_slope is False
    assert parsed.gen_probe_batch == "same"  # exact mode and other probes measure the step's own line
    (parsed,) = parser.parse_args_into_dataclasses(["--output_dir", str(tmp_path), "--lr_scheduler_type", "gen"])
    assert parsed.uses_gen and parsed.gen_probe_batch == "averages"  # the default probe: out of sample
    (parsed,) = parser.parse_args_into_dataclasses(["--output_dir", str(tmp_path), "--lr_scheduler", "cosine"])
    assert not parsed.uses_gen and parsed.lr_scheduler_type.value == "cosine"


def test_unknown_scheduler_name_lists_gen_among_the_choices(tmp_path):
    with pytest.raises(ValueError, match="unknown lr scheduler 'genn': pass one of gen, linear, cosine"):
        args(tmp_path, lr_scheduler_type="genn")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"gen_interval": 0}, "gen_interval must be an integer >= 1"),
        ({"gen_gamma": 1.0}, r"gen_gamma must be in \[0, 1\)"),
        ({"gen_gamma": -0.1}, r"gen_gamma must be in \[0, 1\)"),
        ({"gen_lr_min": 1e-2, "gen_lr_max": 1e-3}, "must not exceed gen_lr_max"),
        ({"gen_lr_min": -1e-3}, "gen_lr_min must be a number >= 0"),
        ({"gen_lr_max": -1.0}, "gen_lr_max must be a number >= 0"),
        ({"gen_mode": "hessian"}, r"gen_mode must be one of \('approx', 'exact'\)"),
        ({"gen_max_change": 0.5}, "gen_max_change must be >= 1"),
        ({"gen_fallback": "constant"}, "gen_fallback must be one of"),
        ({"gen_lower_at_once": "yes"}, "gen_lower_at_once must be True or False"),
        ({"gen_smooth_by_count": 1}, "gen_smooth_by_count must be True or False"),
        ({"gen_jitter_cost": "yes"}, "gen_jitter_cost must be True, False or None, got 'yes'"),
        ({"gen_fast_start_jitter": 1}, "gen_fast_start_jitter must be True, False or None, got 1"),
        ({"gen_undo_lost_windows": "no"}, "gen_undo_lost_windows must be True, False or None, got 'no'"),
        ({"gen_probe_offsets": [0.0]}, "non-zero finite multiples"),
        ({"gen_probe_offsets": [1.0], "gen_use_slope": False}, "at least two probe offsets"),
        ({"learning_rate": 0.0}, "learning_rate > 0"),
        ({"gen_probe_batch": "fresh"}, "gen_probe_batch must be one of 'next', 'same', 'averages'"),
        ({"gen_probe_batch": "next", "gen_mode": "exact"}, "approx-mode scheme"),
        ({"gen_probe_batch": "averages", "gen_mode": "exact"}, "approx-mode scheme"),
        ({"gen_window": 0}, "gen_window must be a whole number of steps >= 1"),
        ({"gen_fast_start_lines": "one-step"}, "gen_fast_start_lines must be one of 'both', 'windows', 'next'"),
        (
            {"gen_fast_start_jitter": True, "gen_probe_batch": "same"},
            "gen_fast_start_jitter charges .* needs gen_probe_batch='averages', gen_fast_start=True",
        ),
        (
            {"gen_fast_start_jitter": True, "gen_fast_start": False},
            "gen_fast_start=False, .* or gen_fast_start_jitter",
        ),
        ({"gen_fast_start_jitter": True, "gen_fast_start_lines": "next"}, "gen_fast_start_lines='next'\\); pass"),
        (
            {"gen_jitter_cost": True, "gen_probe_batch": "next"},
            "gen_jitter_cost charges the lines .* got gen_probe_batch='next': pass gen_probe_batch='averages'",
        ),
        (
            {"gen_pace_unit": True, "gen_probe_batch": "same"},
            "gen_pace_unit sets the unit .* got gen_probe_batch='same': pass gen_probe_batch='averages'",
        ),
        ({"gen_pace_unit": 1}, "gen_pace_unit must be True, False or None"),
        (
            {"gen_kalman_gain": True, "gen_probe_batch": "same"},
            "gen_kalman_gain weighs the lines .* got gen_probe_batch='same': pass gen_probe_batch='averages'",
        ),
        ({"gen_kalman_gain": "yes"}, "gen_kalman_gain must be True, False or None"),
        ({"gen_tail_average": 1.5}, r"gen_tail_average must be a fraction of the run in \[0, 1\]"),
        ({"gen_tail_average": -0.1}, r"gen_tail_average must be a fraction of the run in \[0, 1\]"),
        (
            {
                "gen_tail_average": 0.2,
                "load_best_model_at_end": True,
                "eval_strategy": "steps",
                "save_strategy": "steps",
            },
            "pass one of them, not both",
        ),
    ],
)
def test_invalid_gen_values_raise_at_construction(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        args(tmp_path, **kwargs)


def test_gen_without_gen_trainer_fails_before_the_first_step_naming_what_to_use(tmp_path):
    trainer = Trainer(model=MLP(), args=args(tmp_path), train_dataset=Regression())
    with pytest.raises(ValueError) as caught:
        trainer.train()
    message = str(caught.value)
    assert "not a valid SchedulerType" not in message  # not transformers' generic refusal
    assert "GeNTrainer" in message and "GeNMixin" in message and "GeNTrainingArguments" in message
    assert trainer.state.global_step == 0
    # Only transformers' scheduler lookup is refused: "gen" still hashes, compares and serialises as "gen".
    name = trainer.args.lr_scheduler_type
    assert {name: 1}["gen"] == 1 and {"gen": 2}[name] == 2 and name in {"gen"}
    assert name == "gen" and trainer.args.to_dict()["lr_scheduler_type"] == "gen"
    assert SchedulerType("cosine") is SchedulerType.COSINE


class Prodigyish(torch.optim.Optimizer):
    """A stand-in for an lr-adapting optimizer (any class outside the supported list is refused)."""

    def __init__(self, params, lr=1.0):
        super().__init__(params, {"lr": lr})

    def step(self, closure=None):
        return None


@pytest.mark.parametrize(
    "make_optimizer,match",
    [
        (lambda m: Prodigyish(m.parameters()), "Prodigyish is not known to be"),
        (lambda m: torch.optim.ASGD(m.parameters(), lr=0.01), "ASGD"),
        (lambda m: Adafactor(m.parameters(), lr=None, relative_step=True), "relative_step"),
    ],
)
def test_optimizers_not_linear_in_the_lr_are_refused(tmp_path, make_optimizer, match):
    model = MLP()
    with pytest.raises(ValueError, match=match) as info:
        GeNTrainer(
            model=model, args=args(tmp_path), train_dataset=Regression(), optimizers=(make_optimizer(model), None)
        )
    assert "Supported" in str(info.value) or "relative_step=False" in str(info.value)


def test_schedule_free_by_name_is_refused(tmp_path):
    with pytest.raises(ValueError, match="schedule_free_adamw"):
        GeNTrainer(model=MLP(), args=args(tmp_path, optim="schedule_free_adamw"), train_dataset=Regression())


def test_lomo_by_name_is_refused(tmp_path):
    with pytest.raises(ValueError, match="steps inside backward"):
        GeNTrainer(model=MLP(), args=args(tmp_path, optim="lomo"), train_dataset=Regression())


def test_a_user_scheduler_with_gen_is_refused(tmp_path):
    model = MLP()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.ConstantLR(opt)
    with pytest.raises(ValueError, match=r"optimizers=\(optimizer, None\)"):
        GeNTrainer(model=model, args=args(tmp_path), train_dataset=Regression(), optimizers=(opt, sched))


def test_supported_optim_names_train(tmp_path):
    for optim in ("adamw_torch", "sgd", "adafactor", "rmsprop", "adagrad"):
        # 10 steps: the default's first line runs through the means of steps 1-4 and 5-8, on step 9's batch
        run = args(tmp_path / optim, optim=optim, max_steps=10)
        trainer = GeNTrainer(model=MLP(), args=run, train_dataset=Regression())
        trainer.train()
        assert trainer.lr_scheduler.num_updates >= 1


def test_deepspeed_is_refused_before_anything_is_built(tmp_path):
    pytest.importorskip("deepspeed")
    ds = {"train_micro_batch_size_per_gpu": "auto", "zero_optimization": {"stage": 1}}
    with pytest.raises(ValueError, match="not supported with DeepSpeed.*Use DDP or FSDP"):
        GeNTrainer(model=MLP(), args=args(tmp_path, deepspeed=ds), train_dataset=Regression())


def test_every_gen_field_is_documented_and_enumerated_ones_list_their_choices():
    import dataclasses

    doc = GeNTrainingArguments.__doc__
    gen_fields = [f for f in dataclasses.fields(GeNTrainingArguments) if f.name.startswith("gen_")]
    assert len(gen_fields) >= 15
    for f in gen_fields:
        assert f"{f.name}:" in doc, f.name
        assert f.metadata.get("help"), f.name
    choices = {f.name: f.metadata.get("choices") for f in gen_fields}
    assert set(choices["gen_mode"]) == {"approx", "exact"} and set(choices["gen_probe_batch"]) == {
        "next",
        "same",
        "averages",
    }
    assert set(choices["gen_fallback"]) == {"keep", "shrink", "error"}
    assert set(choices["gen_decay"]) == {"cosine", "linear", "none", "cooldown"}
    assert set(choices["gen_fast_start_lines"]) == {"both", "windows", "next"}


@pytest.mark.parametrize(
    "kwargs,shape",
    [
        ({}, "none"),  # the window lines lower the level themselves
        ({"gen_probe_batch": "next"}, "cosine"),  # greedy one-step estimates do not
        ({"gen_probe_batch": "same"}, "cosine"),
        ({"gen_mode": "exact"}, "cosine"),
        ({"gen_probe_offsets": [-1.0, 1.0]}, "cosine"),  # two probes: same batch
        ({"gen_decay": "cosine"}, "cosine"),  # an explicit shape is kept
        ({"gen_probe_batch": "next", "gen_decay": "none"}, "none"),
    ],
)
def test_the_default_decay_shape_follows_the_probe_scheme(tmp_path, kwargs, shape):
    assert args(tmp_path, **kwargs).gen_decay == shape
    (parsed,) = HfArgumentParser(GeNTrainingArguments).parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--lr_scheduler", "gen"]
        + [f"--{k}={v}" for k, v in kwargs.items() if not isinstance(v, list)]
    )
    if not any(isinstance(v, list) for v in kwargs.values()):
        assert parsed.gen_decay == shape


BEST = {"load_best_model_at_end": True, "eval_strategy": "steps", "save_strategy": "steps"}


@pytest.mark.parametrize(
    "kwargs,tail",
    [
        ({}, 0.2),  # no shape: the last iterate jitters at the level, the tail's mean anneals it
        ({"gen_probe_batch": "next", "gen_decay": "none"}, 0.2),
        ({"gen_decay": "cosine"}, 0.0),  # a shape anneals by itself
        ({"gen_decay": "cooldown"}, 0.0),
        ({"gen_probe_batch": "same"}, 0.0),  # its default shape is cosine
        (BEST, 0.0),  # the user asked for the best checkpoint instead
        ({"gen_tail_average": 0.5}, 0.5),  # an explicit fraction is kept
        ({"gen_tail_average": 0.0}, 0.0),
        ({"gen_tail_average": 0.3, "gen_decay": "cosine"}, 0.3),
    ],
)
def test_the_default_tail_average_follows_the_decay_shape(tmp_path, kwargs, tail):
    assert args(tmp_path, **kwargs).gen_tail_average == tail
    (parsed,) = HfArgumentParser(GeNTrainingArguments).parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--lr_scheduler", "gen"] + [f"--{k}={v}" for k, v in kwargs.items()]
    )
    assert parsed.gen_tail_average == tail


@pytest.mark.parametrize(
    "name,kwargs,on",
    [
        # the undo: the window lines hold the previous window's mean it goes back to
        ("gen_undo_lost_windows", {}, True),
        ("gen_undo_lost_windows", {"gen_probe_batch": "next"}, False),
        ("gen_undo_lost_windows", {"gen_probe_batch": "same"}, False),
        ("gen_undo_lost_windows", {"gen_mode": "exact"}, False),
        ("gen_undo_lost_windows", {"gen_undo_lost_windows": False}, False),
        # the jitter charge on every window line: the window lines, whose means average the jitter out
        ("gen_jitter_cost", {}, True),
        ("gen_jitter_cost", {"gen_fast_start": False}, True),
        ("gen_jitter_cost", {"gen_fast_start_lines": "next"}, True),
        ("gen_jitter_cost", {"gen_probe_batch": "next"}, False),
        ("gen_jitter_cost", {"gen_probe_batch": "same"}, False),
        ("gen_jitter_cost", {"gen_mode": "exact"}, False),
        ("gen_jitter_cost", {"gen_jitter_cost": False}, False),
        # the charge on the fast start's lines (alone with gen_jitter_cost=False): the fast start on window lines
        ("gen_fast_start_jitter", {}, True),
        ("gen_fast_start_jitter", {"gen_fast_start_lines": "windows"}, True),
        ("gen_fast_start_jitter", {"gen_fast_start_lines": "next"}, False),  # one-step lines: no means to charge
        ("gen_fast_start_jitter", {"gen_fast_start": False}, False),
        ("gen_fast_start_jitter", {"gen_probe_batch": "next"}, False),
        ("gen_fast_start_jitter", {"gen_probe_batch": "same"}, False),
        ("gen_fast_start_jitter", {"gen_mode": "exact"}, False),
        ("gen_fast_start_jitter", {"gen_fast_start_jitter": False}, False),
        # the lines' unit from the steps' clocks: the window lines, whose two means the steps walked apart
        ("gen_pace_unit", {}, True),
        ("gen_pace_unit", {"gen_fast_start": False}, True),
        ("gen_pace_unit", {"gen_probe_batch": "next"}, False),
        ("gen_pace_unit", {"gen_probe_batch": "same"}, False),
        ("gen_pace_unit", {"gen_mode": "exact"}, False),
        ("gen_pace_unit", {"gen_pace_unit": False}, False),
        # each settled window line weighed as one batch's measurement: the window lines only
        ("gen_kalman_gain", {}, True),
        ("gen_kalman_gain", {"gen_fast_start": False}, True),
        ("gen_kalman_gain", {"gen_probe_batch": "next"}, False),
        ("gen_kalman_gain", {"gen_probe_batch": "same"}, False),
        ("gen_kalman_gain", {"gen_mode": "exact"}, False),
        ("gen_kalman_gain", {"gen_kalman_gain": False}, False),
    ],
)
def test_window_line_options_are_on_by_default_only_where_they_apply(tmp_path, name, kwargs, on):
    assert getattr(args(tmp_path, **kwargs), name) is on
    (parsed,) = HfArgumentParser(GeNTrainingArguments).parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--lr_scheduler", "gen"] + [f"--{k}={v}" for k, v in kwargs.items()]
    )
    assert getattr(parsed, name) is on


def test_an_undo_without_the_window_lines_says_what_to_pass(tmp_path):
    with pytest.raises(ValueError, match="gen_undo_lost_windows .* got gen_probe_batch='next': pass gen_probe_batch="
                       "'averages', or gen_undo_lost_windows=False"):  # fmt: skip
        args(tmp_path, gen_probe_batch="next", gen_undo_lost_windows=True)


def test_a_bad_decay_shape_says_what_to_pass(tmp_path):
    with pytest.raises(
        ValueError, match=r"gen_decay must be one of \('none', 'linear', 'cosine', 'cooldown'\), got 'step'"
    ):
        args(tmp_path, gen_decay="step")


def test_an_adaptive_gap_on_the_window_lines_is_refused(tmp_path):
    # The window lines are measured once per window: an adaptive recompute gap would change nothing.
    with pytest.raises(ValueError, match="set gen_window to measure less often, or pass gen_probe_batch='next'"):
        args(tmp_path, gen_max_interval=16)
    assert args(tmp_path, gen_max_interval=16, gen_probe_batch="next").gen_max_interval == 16


REMOVED = ("gen_fast_start_batches", "gen_line_batches", "gen_grow_windows", "gen_fast_start_confirm",
           "gen_fast_start_noise", "gen_raise_needs_progress")  # fmt: skip


@pytest.mark.parametrize("name", REMOVED)
def test_a_removed_option_is_refused_by_name_not_ignored(tmp_path, name):
    # Measured, not adopted and removed (README): passing one must fail, in Python and on the command line, naming it.
    with pytest.raises(TypeError, match=name):
        GeNTrainingArguments(output_dir=str(tmp_path), lr_scheduler_type="gen", **{name: 2})
    parser = HfArgumentParser(GeNTrainingArguments)
    with pytest.raises(ValueError, match=f"--{name}"):
        parser.parse_args_into_dataclasses(["--output_dir", str(tmp_path), "--lr_scheduler", "gen", f"--{name}", "2"])
