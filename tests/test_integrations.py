"""GeN with PEFT LoRA adapters and TRL's SFTTrainer, for real."""

from dataclasses import dataclass

import pytest
import torch

from hf_gen import GeNMixin, GeNTrainer, GeNTrainingArguments
from hf_gen.line import LineSnapshot

from tiny import Tokens, read_trace, tiny_gpt2

peft = pytest.importorskip("peft")
trl = pytest.importorskip("trl")


@pytest.mark.parametrize("probe_batch", ["next", "same"])
def test_lora_snapshots_only_the_adapters_and_leaves_the_base_bitwise_untouched(tmp_path, probe_batch):
    model = peft.get_peft_model(
        tiny_gpt2(seed=0), peft.LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], lora_dropout=0.1)
    )
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    n_trainable = sum(p.numel() for p in trainable.values())
    snapshot_sizes = []

    class Recording(GeNTrainer):
        def _gen_before_optimizer_step(self, optimizer, args, kwargs):
            super()._gen_before_optimizer_step(optimizer, args, kwargs)
            pending = getattr(self._gen_scheme, "pending", None)  # next batch: the copy held for the next step
            snapshot = (self._gen_step.snapshot if self._gen_step else None) or (pending[0] if pending else None)
            if isinstance(snapshot, LineSnapshot) and not any(snapshot is s for s in seen):
                seen.append(snapshot)  # held, so that a new snapshot is never mistaken for a freed one
                snapshot_sizes.append(sum(t.numel() for t in snapshot.theta0))

    seen: list[LineSnapshot] = []
    args = GeNTrainingArguments(output_dir=str(tmp_path), lr_scheduler_type="gen", learning_rate=1e-3, max_steps=4,
                                gen_interval=1, per_device_train_batch_size=4, report_to="none", use_cpu=True,
                                save_strategy="no", gen_probe_batch=probe_batch)  # fmt: skip
    Recording(model=model, args=args, train_dataset=Tokens()).train()
    assert snapshot_sizes == [n_trainable] * 4
    assert n_trainable < 0.2 * sum(p.numel() for p in model.parameters())
    for name, before in frozen.items():
        assert torch.equal(dict(model.named_parameters())[name], before), name
    assert any(not torch.equal(dict(model.named_parameters())[n], p) for n, p in trainable.items())
    trace = read_trace(tmp_path)
    assert len(trace) == (4 if probe_batch == "same" else 3) and trace[-1]["lr"] != 1e-3


@dataclass
class GeNSFTConfig(GeNTrainingArguments, trl.SFTConfig):
    """The README's recipe: GeN's arguments on top of TRL's config."""


class GeNSFTTrainer(GeNMixin, trl.SFTTrainer):
    """The README's recipe: GeN on TRL's SFTTrainer."""


def word_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = "to be or not that is the question whether tis nobler in mind suffer slings arrows".split()
    vocab = {"[PAD]": 0, "[UNK]": 1, "[EOS]": 2, **{w: i + 3 for i, w in enumerate(words)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="[PAD]", eos_token="[EOS]", unk_token="[UNK]")
    return fast, words


def test_sft_trainer_takes_gen_and_its_token_metrics_count_training_forwards_only(tmp_path):
    import datasets

    tokenizer, words = word_tokenizer()
    g = torch.Generator().manual_seed(0)
    texts = [" ".join(words[j] for j in torch.randint(0, len(words), (int(n),), generator=g))
             for n in torch.randint(4, 12, (32,), generator=g)]  # fmt: skip
    data = datasets.Dataset.from_dict({"text": texts})
    common = dict(learning_rate=1e-3, max_steps=4, per_device_train_batch_size=4, report_to="none", use_cpu=True,
                  save_strategy="no", max_length=16, logging_steps=1, seed=0)  # fmt: skip
    gen_cfg = GeNSFTConfig(
        output_dir=str(tmp_path / "gen"), lr_scheduler_type="gen", gen_interval=1, gen_probe_batch="next", **common
    )
    gen = GeNSFTTrainer(model=tiny_gpt2(vocab=len(tokenizer)), args=gen_cfg, train_dataset=data,
                        processing_class=tokenizer)  # fmt: skip
    gen.train()
    plain_cfg = trl.SFTConfig(output_dir=str(tmp_path / "plain"), lr_scheduler_type="constant", **common)
    plain = trl.SFTTrainer(model=tiny_gpt2(vocab=len(tokenizer)), args=plain_cfg, train_dataset=data,
                           processing_class=tokenizer)  # fmt: skip
    plain.train()
    trace = read_trace(tmp_path / "gen")
    assert [r["step"] for r in trace] == [2, 3, 4]  # each line measured on the next batch
    gen_logs = [h for h in gen.state.log_history if "loss" in h]
    plain_logs = [h for h in plain.state.log_history if "loss" in h]
    # Token counts depend on the data alone: the probes must not add to them.
    assert [h["num_tokens"] for h in gen_logs] == [h["num_tokens"] for h in plain_logs]
    assert [h["gen/lr"] for h in gen_logs[1:]] == [r["lr"] for r in trace]
    assert gen_logs[0]["loss"] == pytest.approx(plain_logs[0]["loss"], rel=1e-4)  # same first batch, same init
