"""Warm-start the head before training MITP: a linear probe before fine-tuning (LP-FT, Kumar et al., ICLR 2022).

A fresh adapter's head is random, so the first epoch of MITP training spends itself teaching the head what the
frozen features already say, while the prompts get gradients through a head that points nowhere. The features of a
fresh adapter are computed once (one pass, no gradients, about a third of an epoch's cost), the head alone is fitted
on them for many cheap epochs, and MITP training then starts from what late fusion reaches.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from peft import PeftModel

from .head import HeadInputs, classification_loss
from .model import MITPModel, tuner_of

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
    after `get_peft_model` (and `init_head_zero_shot`, if used) and before training; the prompts and the hub are left
    as they are. AdamW, no weight decay, the learning rate decaying linearly to zero.
    """
    tuner = tuner_of(model)
    name = tuner._active_adapter_name()
    adapter = tuner.mitp_adapters[name]
    problem_type = tuner.peft_config[name].problem_type
    device = adapter.prompt.device
    was_training = tuner.model.training
    tuner.model.eval()
    features, labels = [], []
    with torch.no_grad():
        for batch in batches:
            if "labels" not in batch:
                raise ValueError(
                    f"warm_start_head fits the head to labels, but a batch holds only {sorted(batch)}: give it "
                    "batches with labels, e.g. a DataLoader with MITPCollator over rows that have a label."
                )
            batch = {key: value.to(device) for key, value in batch.items()}
            labels.append(batch.pop("labels"))
            features.append(adapter(tuner._towers, batch)[1])
    tuner.model.train(was_training)
    if not features:
        raise ValueError("warm_start_head got no batches: give it the training batches (with labels).")
    columns = {
        field: torch.cat([getattr(f, field) for f in features]) if getattr(features[0], field) is not None else None
        for field in HeadInputs._fields
    }
    labels = torch.cat(labels)
    head = adapter.head
    optimizer = torch.optim.AdamW(head.parameters(), lr=learning_rate, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    steps = epochs * -(-len(labels) // batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)
    for _ in range(epochs):
        total = torch.zeros((), device=device)
        for index in torch.randperm(len(labels), generator=generator).split(batch_size):
            index = index.to(device)
            inputs = HeadInputs(**{k: None if v is None else v[index] for k, v in columns.items()})
            loss = classification_loss(head(inputs), labels[index], problem_type)
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            total += loss.detach() * len(index)
    return total.item() / len(labels)
