"""Train an MITP adapter with `transformers.Trainer` on UPMC-Food101, MM-IMDB, SNLI-VE or your own pairs.

    python examples/train.py --dataset food101 --data_dir /data/upmc_food101 \\
        --base_model openai/clip-vit-large-patch14 --output_dir out/food101 \\
        --num_train_epochs 3 --per_device_train_batch_size 32 --learning_rate 1e-3

    python examples/train.py --dataset pairs --train_file train.csv --validation_file val.csv ...

Multi-GPU: `accelerate launch examples/train.py ...` (or `torchrun --nproc_per_node N examples/train.py ...`).
Evaluates at the end, saves the adapter (with its model card) and the processor to --output_dir, and writes the
metrics to metrics.json there.
"""

import json
import logging
from dataclasses import asdict
from pathlib import Path

from common import ScriptArguments, build_adapter, make_collator, prepared, warm_start
from transformers import AutoProcessor, HfArgumentParser, Trainer, TrainingArguments, set_seed

import mitp_peft
from mitp_peft.arguments import DataArguments, MITPArguments, load_splits
from mitp_peft.metrics import compute_metrics

logger = logging.getLogger(__name__)


def main() -> None:
    parser = HfArgumentParser((DataArguments, ScriptArguments, MITPArguments, TrainingArguments))
    data_args, script_args, mitp_args, training_args = parser.parse_args_into_dataclasses()
    # Image columns must reach the collator, and CLIPModel declares no labels of its own.
    training_args.remove_unused_columns = False
    training_args.label_names = ["labels"]
    logging.basicConfig(level=logging.INFO if training_args.should_log else logging.WARNING)

    splits = load_splits(data_args)
    processor = AutoProcessor.from_pretrained(script_args.base_model)
    set_seed(training_args.seed)  # before the adapter's random initialization, so runs are reproducible
    model = build_adapter(script_args, mitp_args, splits, processor)
    model.print_trainable_parameters()
    problem_type = model.active_peft_config.problem_type
    collator = make_collator(model, processor, splits, data_args)
    if not training_args.resume_from_checkpoint:  # a resumed run loads its head from the checkpoint
        warm_start(model, script_args, splits, collator, training_args.seed)
    train_rows, eval_rows, batches = prepared(model, script_args, splits, collator)

    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_rows,
        eval_dataset=eval_rows,
        data_collator=batches,
        compute_metrics=compute_metrics(problem_type, script_args.threshold),
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    metrics = {}
    if splits.evaluation is None:
        logger.warning("No evaluation split (pairs without --validation_file): the adapter is saved unevaluated.")
    else:
        metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)

    if trainer.is_world_process_zero():
        output = Path(training_args.output_dir)
        reported = {
            k.removeprefix("eval_"): v
            for k, v in metrics.items()
            if k.removeprefix("eval_") in ("accuracy", "f1_macro", "f1_micro")
        }
        settings = {
            k: getattr(training_args, k)
            for k in (
                "learning_rate",
                "num_train_epochs",
                "max_steps",
                "per_device_train_batch_size",
                "gradient_accumulation_steps",
                "seed",
            )
        }
        mitp_peft.describe_training(model, dataset=data_args.name, metrics=reported, training=settings)
        model.save_pretrained(output)
        processor.save_pretrained(output)
        arguments = {"script": asdict(script_args), "mitp": asdict(mitp_args)}
        (output / "metrics.json").write_text(json.dumps({"eval": metrics, **arguments}, indent=2))
        logger.info("Saved the adapter, its card and the processor to %s", output)


if __name__ == "__main__":
    main()
