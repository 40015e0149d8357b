"""One Trainer run on a tiny CLIP, used by test_trainer.py in-process and under torchrun (2 processes, gloo).

Writes the eval loss and the adapter's tensors (rank 0) to OUT_DIR.
"""

import json
import os
import sys

import torch
from helpers import PairDataset, tiny_clip
from peft import get_peft_model
from safetensors.torch import save_file
from transformers import Trainer, TrainingArguments

from mitp_peft import MITPConfig


def run(out_dir: str, per_device_batch: int, accumulation: int, ddp: bool = False) -> dict:
    model = get_peft_model(tiny_clip(), MITPConfig(num_labels=3))
    args = TrainingArguments(
        output_dir=out_dir,
        per_device_train_batch_size=per_device_batch,
        per_device_eval_batch_size=2,
        gradient_accumulation_steps=accumulation,
        max_steps=1,
        learning_rate=0.5,
        optim="sgd",
        lr_scheduler_type="constant",
        use_cpu=True,
        ddp_backend="gloo" if ddp else None,
        remove_unused_columns=False,
        label_names=["labels"],
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
    )
    # One optimizer step that covers the whole training set, so the sample order cannot matter.
    trainer = Trainer(model=model, args=args, train_dataset=PairDataset(4), eval_dataset=PairDataset(8, seed=9))
    trainer.train()
    metrics = trainer.evaluate()
    if trainer.is_world_process_zero():
        tensors = {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}
        save_file(tensors, os.path.join(out_dir, "adapter.safetensors"))
        with open(os.path.join(out_dir, "metrics.json"), "w") as f:
            json.dump({"eval_loss": metrics["eval_loss"], "world_size": args.world_size}, f)
    return metrics


if __name__ == "__main__":
    torch.manual_seed(0)
    run(sys.argv[1], per_device_batch=int(sys.argv[2]), accumulation=int(sys.argv[3]), ddp=True)
    # Trainer leaves the process group open; exiting with gloo's threads alive can abort a rank.
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
