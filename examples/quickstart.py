"""The README's quick start, runnable: MITP on a CLIP, one training step, save, reload, same logits.

    python examples/quickstart.py                      # offline: a tiny random CLIP built from a config
    python examples/quickstart.py --base openai/clip-vit-large-patch14 --image cat.jpg --text "a photo of a cat"

Random weights only show the mechanics; accuracy needs a pretrained backbone (see the README).
"""

import argparse
import tempfile

import torch
from peft import PeftModel, get_peft_model
from transformers import CLIPConfig, CLIPModel

import mitp_peft  # registers "MITP" with peft
from mitp_peft import MITPConfig


def tiny_clip() -> CLIPModel:
    text = dict(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=6, num_attention_heads=4)
    text.update(bos_token_id=998, eos_token_id=999, pad_token_id=0)
    vision = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=6, num_attention_heads=4)
    vision.update(image_size=64, patch_size=16)
    return CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=32))


def tiny_batch(num_labels: int) -> dict:
    ids = torch.randint(1, 998, (4, 12))
    ids[:, 0], ids[:, -1] = 998, 999
    return dict(
        pixel_values=torch.randn(4, 3, 64, 64),
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        labels=torch.arange(4) % num_labels,
    )


def real_batch(base: str, image: str, text: str, model: PeftModel) -> dict:
    from PIL import Image
    from transformers import CLIPProcessor

    processor = CLIPProcessor.from_pretrained(base)
    return dict(
        processor(
            text=[text],
            images=[Image.open(image).convert("RGB")],
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=model.max_text_length,  # room left next to the prompts
        ),
        labels=torch.tensor([0]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", help="CLIP checkpoint (hub id or local folder); default: a tiny random CLIP")
    parser.add_argument("--image", help="an image file (with --base)")
    parser.add_argument("--text", default="a photo", help="a text (with --base)")
    parser.add_argument("--num-labels", type=int, default=3)
    args = parser.parse_args()
    if args.base and not args.image:
        parser.error("--base needs --image (and --text): a real checkpoint is tried on a real image")

    torch.manual_seed(0)
    load = (lambda: CLIPModel.from_pretrained(args.base)) if args.base else tiny_clip
    model = get_peft_model(load(), MITPConfig(num_labels=args.num_labels))
    model.print_trainable_parameters()
    batch = real_batch(args.base, args.image, args.text, model) if args.base else tiny_batch(args.num_labels)

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    out = model(**batch)
    out.loss.backward()
    optimizer.step()
    print(
        f"loss {out.loss.item():.4f}, logits {tuple(out.logits.shape)}, "
        f"image features {tuple(out.image_features.shape)}, text features {tuple(out.text_features.shape)}"
    )

    model.eval()
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        torch.manual_seed(0)
        again = PeftModel.from_pretrained(load(), folder)
        same = torch.equal(again(**batch).logits, model(**batch).logits)
    print(f"saved and reloaded with mitp_peft {mitp_peft.__version__}: identical logits = {same}")
    if not same:
        raise SystemExit("reloaded adapter gave different logits")


if __name__ == "__main__":
    main()
