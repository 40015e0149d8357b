"""Train an MITP adapter with a plain Accelerate loop: one or many GPUs, mixed precision, gradient accumulation,
checkpoints with `accelerator.save_state`, resuming.

    accelerate launch examples/train_accelerate.py --dataset food101 --data_dir /data/upmc_food101 \\
        --base_model openai/clip-vit-large-patch14 --output_dir out/food101 --mixed_precision bf16
    accelerate launch --multi_gpu --num_processes 4 examples/train_accelerate.py ...   # 4 GPUs
    ... --checkpointing_steps 500            # writes output_dir/step_500, ...
    ... --resume_from_checkpoint out/food101/step_500

Saves the adapter (with its model card), the processor and metrics.json to --output_dir.
"""

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from common import DataArguments, ModelArguments, load_splits, mitp_config
from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from safetensors.torch import load_file
from torch.utils.data import DataLoader
from transformers import AutoModel, AutoProcessor, HfArgumentParser

import mitp_peft
from mitp_peft.data import MITPCollator
from mitp_peft.head import classification_loss
from mitp_peft.metrics import accuracy, multi_label_f1

logger = logging.getLogger(__name__)


@dataclass
class LoopArguments:
    output_dir: str
    learning_rate: float = 1e-3
    optimizer: str = field(default="adamw", metadata={"help": "adamw or sgd"})
    weight_decay: float = 0.0
    num_train_epochs: int = 1
    max_steps: Optional[int] = None
    per_device_train_batch_size: int = 8
    per_device_eval_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    mixed_precision: str = "no"
    checkpointing_steps: Optional[int] = None
    resume_from_checkpoint: Optional[str] = None
    seed: int = 42
    cpu: bool = False


def main() -> None:
    parser = HfArgumentParser((DataArguments, ModelArguments, LoopArguments))
    data_args, model_args, args = parser.parse_args_into_dataclasses()
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        cpu=args.cpu,
        # The sample order depends only on the seed and the epoch, so a resumed run sees what it would have seen.
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    logging.basicConfig(level=logging.INFO if accelerator.is_main_process else logging.WARNING)
    set_seed(args.seed)
    adapter_only_checkpoints(accelerator)

    train, evaluation, names, multi_label = load_splits(data_args)
    config = mitp_config(model_args, names, multi_label)
    model = get_peft_model(AutoModel.from_pretrained(model_args.base_model), config)
    if accelerator.is_main_process:
        model.print_trainable_parameters()
    processor = AutoProcessor.from_pretrained(model_args.base_model)
    collator = MITPCollator(processor, model.max_text_length, num_labels=len(names) if multi_label else None)
    train_loader = DataLoader(train, args.per_device_train_batch_size, shuffle=True, collate_fn=collator)
    eval_loader = DataLoader(evaluation, args.per_device_eval_batch_size, collate_fn=collator)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizers = {"adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
    if args.optimizer not in optimizers:
        raise ValueError(f"--optimizer must be one of {sorted(optimizers)}, got {args.optimizer!r}.")
    optimizer = optimizers[args.optimizer](trainable, lr=args.learning_rate, weight_decay=args.weight_decay)
    model, optimizer, train_loader, eval_loader = accelerator.prepare(model, optimizer, train_loader, eval_loader)

    steps_per_epoch = math.ceil(len(train_loader) / args.gradient_accumulation_steps)
    max_steps = args.max_steps or args.num_train_epochs * steps_per_epoch
    done_steps = 0
    if args.resume_from_checkpoint:
        accelerator.load_state(args.resume_from_checkpoint)
        done_steps = int(Path(args.resume_from_checkpoint).name.removeprefix("step_"))
        logger.info("Resumed from %s after %d optimizer steps", args.resume_from_checkpoint, done_steps)

    model.train()
    while done_steps < max_steps:
        epoch, finished = divmod(done_steps, steps_per_epoch)
        train_loader.set_epoch(epoch)
        loader = accelerator.skip_first_batches(train_loader, finished * args.gradient_accumulation_steps)
        for batch in loader:
            with accelerator.accumulate(model):
                accelerator.backward(model(**batch).loss)
                optimizer.step()
                optimizer.zero_grad()
            if not accelerator.sync_gradients:
                continue
            done_steps += 1
            if args.checkpointing_steps and done_steps % args.checkpointing_steps == 0:
                accelerator.save_state(str(Path(args.output_dir) / f"step_{done_steps}"))
            if done_steps >= max_steps:
                break

    metrics = evaluate(accelerator, model, eval_loader, config.problem_type, model_args.threshold)
    logger.info("eval: %s", metrics)
    if accelerator.is_main_process:
        output = Path(args.output_dir)
        adapter = accelerator.unwrap_model(model)
        reported = {k: v for k, v in metrics.items() if k != "loss"}
        mitp_peft.describe_training(adapter, dataset=data_args.dataset, metrics=reported, training=asdict(args))
        adapter.save_pretrained(output)
        processor.save_pretrained(output)
        (output / "metrics.json").write_text(json.dumps({"eval": metrics, "steps": done_steps}, indent=2))
    accelerator.wait_for_everyone()
    accelerator.end_training()


def adapter_only_checkpoints(accelerator: Accelerator) -> None:
    """Checkpoints hold the adapter, not the frozen backbone: 8 MB instead of 1.7 GB on CLIP ViT-L/14."""

    def save(models: list, weights: list, output_dir: str) -> None:
        weights[0] = get_peft_model_state_dict(accelerator.unwrap_model(models[0]))

    def load(models: list, input_dir: str) -> None:
        set_peft_model_state_dict(
            accelerator.unwrap_model(models[0]), load_file(Path(input_dir) / "model.safetensors")
        )
        models.pop(0)  # loaded: accelerate must not load it again as a whole model

    accelerator.register_save_state_pre_hook(save)
    accelerator.register_load_state_pre_hook(load)


def evaluate(accelerator, model, loader, problem_type: str, threshold: float) -> dict[str, float]:
    """Metrics and the mean loss over the whole evaluation set, gathered from every process (no sample twice)."""
    model.eval()
    logits, labels = [], []
    with torch.no_grad():
        for batch in loader:
            out = model(**batch)
            batch_logits, batch_labels = accelerator.gather_for_metrics((out.logits, batch["labels"]))
            logits.append(batch_logits.float().cpu())
            labels.append(batch_labels.cpu())
    model.train()
    logits, labels = torch.cat(logits), torch.cat(labels)
    metrics = {"loss": classification_loss(logits, labels, problem_type).item()}
    if problem_type == "multi_label_classification":
        metrics.update(multi_label_f1(logits.numpy(), labels.numpy(), threshold))
    else:
        metrics.update(accuracy(logits.numpy(), np.asarray(labels)))
    return metrics


if __name__ == "__main__":
    main()
