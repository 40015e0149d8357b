"""Warm-start the head before training MITP: a linear probe before fine-tuning (LP-FT, Kumar et al., ICLR 2022).

A fresh adapter's head is random, so the first epoch of MITP training spends itself teaching the head what the
frozen features already say, while the prompts get gradients through a head that points nowhere. The features of a
fresh adapter are computed once (one pass, no gradients, about a third of an epoch's cost), the head alone is fitted
on them for many cheap epochs, and MITP training then starts from what late fusion reaches.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from peft import PeftModel
from transformers.utils import logging

from .fsdp import refuse_sharded
from .method.head import HeadInputs
from .method.loss import classification_loss
from .training import fit, linear_decay
from .tuner.model import MITPModel, tuner_of

WARM_START_EPOCHS = 20
WARM_START_LEARNING_RATE = 1e-3


def warm_start_head(
    model: PeftModel | MITPModel,
    batches: Iterable[dict],
    epochs: int = WARM_START_EPOCHS,
    learning_rate: float = WARM_START_LEARNING_RATE,
    batch_size: int = 32,
    seed: int = 0,
) -> float:
    """Fit the active adapter's head alone on the features the adapter gives now; returns the last epoch's loss.

    `batches` are model inputs with `labels`, e.g. a `DataLoader` over the training set with `MITPCollator`. Call it
    after `get_peft_model` (and `init_head_zero_shot`, if used) and before creating the optimizer; the prompts and
    the hub are left as they are. AdamW, no weight decay, the learning rate decaying linearly to zero.
    """
    refuse_sharded(model, "warm_start_head")
    tuner = tuner_of(model)
    name = tuner.active_adapter_name
    adapter = tuner.mitp_adapters[name]
    problem_type = tuner.peft_config[name].problem_type
    features, labels = head_inputs(tuner, batches)
    head = adapter.head
    steps_per_epoch = -(-len(labels) // batch_size)
    generator = torch.Generator().manual_seed(seed)

    def shuffled() -> Iterator[torch.Tensor]:
        for _ in range(epochs):
            yield from torch.randperm(len(labels), generator=generator).split(batch_size)

    def loss_of(index: torch.Tensor) -> torch.Tensor:
        index = index.to(labels.device)
        inputs = HeadInputs(*(None if column is None else column[index] for column in features))
        return classification_loss(head(inputs), labels[index], problem_type)

    total_steps = epochs * steps_per_epoch
    optimizer = torch.optim.AdamW(head.parameters(), lr=learning_rate, weight_decay=0.0)
    losses = fit(
        optimizer, shuffled(), loss_of, total_steps, linear_decay(total_steps), "warm start: fitting the head"
    )
    adapter.head_fitted = True
    sizes = torch.tensor([len(index) for index in torch.arange(len(labels)).split(batch_size)], device=losses.device)
    return (losses[-steps_per_epoch:] * sizes).sum().item() / len(labels)


@torch.no_grad()
def head_inputs(tuner: MITPModel, batches: Iterable[dict]) -> tuple[HeadInputs, torch.Tensor]:
    """What the active adapter's head reads for every sample of `batches` (one pass, no gradients), and the labels."""
    adapter = tuner.mitp_adapters[tuner.active_adapter_name]
    device = adapter.prompt.device
    was_training = tuner.model.training
    tuner.model.eval()
    features, labels = [], []
    total = len(batches) if hasattr(batches, "__len__") else None
    try:
        for batch in logging.tqdm(batches, total=total, desc="warm start: features of the frozen model", unit="batch"):
            if "labels" not in batch:
                raise ValueError(
                    f"warm_start_head fits the head to labels, but a batch holds only {sorted(batch)}: give it "
                    "batches with labels, e.g. a DataLoader with MITPCollator over rows that have a label."
                )
            # Only tensors move; flags such as interpolate_pos_encoding=True pass as they are.
            batch = {key: value.to(device) if torch.is_tensor(value) else value for key, value in batch.items()}
            labels.append(torch.as_tensor(batch.pop("labels"), device=device))
            features.append(adapter(tuner.towers, adapter.batch(tuner.towers, batch))[1])
    finally:
        tuner.model.train(was_training)
    if not features:
        raise ValueError("warm_start_head got no batches: give it the training batches (with labels).")
    columns = HeadInputs(
        *(
            None if getattr(features[0], column) is None else torch.cat([getattr(f, column) for f in features])
            for column in HeadInputs._fields
        )
    )
    return columns, torch.cat(labels)
