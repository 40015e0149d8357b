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

from common import DataArguments, ModelArguments, load_splits, mitp_config
from peft import get_peft_model
from transformers import AutoModel, AutoProcessor, HfArgumentParser, Trainer, TrainingArguments, set_seed

import mitp_peft
from mitp_peft.data import MITPCollator
from mitp_peft.metrics import compute_metrics

logger = logging.getLogger(__name__)


def main() -> None:
    parser = HfArgumentParser((DataArguments, ModelArguments, TrainingArguments))
    data_args, model_args, training_args = parser.parse_args_into_dataclasses()
    # Image columns must reach the collator, and CLIPModel declares no labels of its own.
    training_args.remove_unused_columns = False
    training_args.label_names = ["labels"]
    logging.basicConfig(level=logging.INFO if training_args.should_log else logging.WARNING)

    train, evaluation, names, multi_label = load_splits(data_args)
    config = mitp_config(model_args, names, multi_label)
    set_seed(training_args.seed)  # before the adapter's random initialization, so runs are reproducible
    model = get_peft_model(AutoModel.from_pretrained(model_args.base_model), config)
    model.print_trainable_parameters()
    processor = AutoProcessor.from_pretrained(model_args.base_model)
    collator = MITPCollator(processor, model.max_text_length, num_labels=len(names) if multi_label else None)

    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train,
        eval_dataset=evaluation,
        data_collator=collator,
        compute_metrics=compute_metrics(config.problem_type, model_args.threshold),
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
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
        mitp_peft.describe_training(model, dataset=data_args.dataset, metrics=reported, training=settings)
        model.save_pretrained(output)
        processor.save_pretrained(output)
        (output / "metrics.json").write_text(json.dumps({"eval": metrics, "model": asdict(model_args)}, indent=2))
        logger.info("Saved the adapter, its card and the processor to %s", output)


if __name__ == "__main__":
    main()
