"""MITP against its peers on the same backbone and batch: one training step and one inference step each.

    python benchmarks/efficiency.py                      # CLIP ViT-B/16 size, batch 8, on this machine's CPU
    python benchmarks/efficiency.py --size l14 --steps 2 # ViT-L/14 (several minutes on 2 cores)
    python benchmarks/efficiency.py --size tiny          # seconds: checks the script itself

Backbones are built from their configs with random weights: cost does not depend on the weights. Every method runs
in a fresh process, so its peak memory is its own (read after a warm-up step and one more of training and of
inference). Its times are then taken in pairs with the frozen backbone's no-grad forward, built beside it in the same
process: a step of the method, a forward of the frozen backbone, `--steps` times, so that each ratio to the frozen
forward compares two neighbouring measurements and the drift of a shared machine cancels out. Times are medians, ratios
the medians of the pairs' ratios; comparisons between methods divide their ratios. Throughput is the batch over the
step time. Compiled rows use `torch.compile` with its default backend; their warm-up step is the compilation. On a GPU
(`--device cuda`), memory is `torch.cuda.max_memory_allocated`.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from datetime import date
from pathlib import Path

import torch
from torch import nn

from mitp_bench.measure import paired, peak_memory_bytes, timed

HERE = Path(__file__).resolve().parent
NUM_LABELS = 101
TEXT_LENGTH = 32
METHODS = (
    "frozen",
    "frozen_compiled",
    "mitp",
    "mitp_compiled",
    "mitp_cached",
    "mitp_checkpointing",
    "late_fusion",
    "lora",
    "pmf_style",
    "full_ft",
)
DESCRIPTIONS = {
    "frozen": "frozen backbone, no-grad forward (reference)",
    "frozen_compiled": "frozen backbone, no-grad forward, torch.compile",
    "mitp": "MITP (the package's defaults)",
    "mitp_compiled": "MITP (defaults), torch.compile",
    "mitp_cached": "MITP from the extraction cache",
    "mitp_checkpointing": "MITP with gradient checkpointing",
    "late_fusion": "late fusion (linear head on frozen pooled features)",
    "lora": "LoRA r=8 (q, k, v, out of both towers) + head",
    "pmf_style": "PMF-style (top 4 layers of both towers, each run twice) + heads",
    "full_ft": "full fine-tuning + head",
}
SIZES = {
    "tiny": dict(text=(64, 4), vision=(64, 4), patch=16, image=64),
    "b16": dict(text=(512, 12), vision=(768, 12), patch=16, image=224),
    "l14": dict(text=(768, 12), vision=(1024, 24), patch=14, image=224),
}


def build_backbone(size: str) -> nn.Module:
    from transformers import CLIPConfig, CLIPModel

    spec = SIZES[size]
    (d_t, l_t), (d_v, l_v) = spec["text"], spec["vision"]
    text = dict(hidden_size=d_t, intermediate_size=4 * d_t, num_hidden_layers=l_t, num_attention_heads=d_t // 64)
    vision = dict(hidden_size=d_v, intermediate_size=4 * d_v, num_hidden_layers=l_v, num_attention_heads=d_v // 64)
    vision.update(patch_size=spec["patch"], image_size=spec["image"])
    return CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=d_t))


def make_batch(size: str, batch: int, device: str, dtype: torch.dtype) -> dict:
    g = torch.Generator().manual_seed(0)
    image = SIZES[size]["image"]
    ids = torch.randint(1, 49000, (batch, TEXT_LENGTH), generator=g)
    ids[:, 0], ids[:, -1] = 49406, 49407
    return dict(
        pixel_values=torch.randn(batch, 3, image, image, generator=g).to(device, dtype),
        input_ids=ids.to(device),
        attention_mask=torch.ones_like(ids).to(device),
    )


class PooledHead(nn.Module):
    """A linear head on both towers' pooled features (before the projections), through CLIP's own tower forwards:
    the fastest path the baselines have (it uses sdpa's built-in causal masking). The head stays in float32 on a
    bf16 backbone, as MITP's adapter does and peft's LoRA weights do."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        size = backbone.config.text_config.hidden_size + backbone.config.vision_config.hidden_size
        self.head = nn.Linear(size, NUM_LABELS)

    def features(self, pixel_values, input_ids, attention_mask) -> torch.Tensor:
        image = self.backbone.vision_model(pixel_values=pixel_values).pooler_output
        text = self.backbone.text_model(input_ids=input_ids, attention_mask=attention_mask).pooler_output
        return torch.cat([image, text], dim=-1).to(self.head.weight.dtype)

    def forward(self, **inputs) -> torch.Tensor:
        return self.head(self.features(**inputs))


class LateFusion(PooledHead):
    """Only the head trains: the towers run without a graph."""

    def forward(self, **inputs) -> torch.Tensor:
        with torch.no_grad():
            features = self.features(**inputs)
        return self.head(features)


def build_method(method: str, size: str, device: str, dtype: torch.dtype, batch: dict) -> tuple[nn.Module, dict]:
    """The model to time and the inputs it takes."""
    from peft import LoraConfig, get_peft_model
    from pmf_style import PMFStyle

    from mitp_peft import MITPConfig

    torch.manual_seed(0)
    backbone = build_backbone(size).to(device, dtype)
    method = method.removesuffix("_compiled")  # compiled in the worker
    if method == "frozen":
        return backbone.requires_grad_(False), batch
    if method == "late_fusion":
        return LateFusion(backbone.requires_grad_(False)).to(device), batch
    if method == "full_ft":
        return PooledHead(backbone).to(device), batch
    if method == "lora":
        lora = get_peft_model(backbone, LoraConfig(r=8, target_modules=["q_proj", "k_proj", "v_proj", "out_proj"]))
        return PooledHead(lora.base_model.model).to(device), batch
    if method == "pmf_style":
        return PMFStyle(backbone, NUM_LABELS).to(device), batch
    if method == "mitp_checkpointing":
        backbone.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model = get_peft_model(backbone, MITPConfig(num_labels=NUM_LABELS))
    if method == "mitp_cached":
        from mitp_peft.extraction import extract_states  # imports datasets, which only this row needs

        states = extract_states(model, batch)
        batch = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **states)
    return model, batch


def logits_of(out) -> torch.Tensor:
    return out if torch.is_tensor(out) else out.logits


def worker(
    method: str, size: str, batch_size: int, steps: int, device: str, dtype: str, compile_backend: str = "inductor"
) -> dict:
    torch_dtype = getattr(torch, dtype)
    batch = make_batch(size, batch_size, device, torch_dtype)
    model, inputs = build_method(method, size, device, torch_dtype, batch)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if method.endswith("_compiled"):
        model = torch.compile(model, backend=compile_backend)  # compiling happens in the warm-up step
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    result = {"method": method, "trainable_params": sum(p.numel() for p in trainable)}
    if method == "frozen":
        with torch.no_grad():
            times = [timed(lambda: model(**inputs), device) for _ in range(steps + 1)][1:]  # the first warms up
        median = statistics.median(times)
        result.update(train_s=median, infer_s=median, train_ratio=1.0, infer_ratio=1.0)
        result["peak_bytes"] = peak_memory_bytes(device)
        return finish(result, batch_size)

    if method == "frozen_compiled":
        train_step = None

        def infer_step() -> None:
            with torch.no_grad():
                model(**inputs)
    else:
        optimizer = torch.optim.AdamW(trainable, lr=1e-4)
        labels = torch.arange(batch_size, device=device) % NUM_LABELS

        def train_step() -> None:
            model.train()
            loss = nn.functional.cross_entropy(logits_of(model(**inputs)), labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        def infer_step() -> None:
            model.eval()
            with torch.no_grad():
                model(**inputs)

    phases = (("train", train_step), ("infer", infer_step)) if train_step else (("infer", infer_step),)
    for _, step in phases:  # a warm-up and one more step each, before the peak is read
        step()
        step()
    result["peak_bytes"] = peak_memory_bytes(device)

    frozen, _ = build_method("frozen", size, device, torch_dtype, batch)

    def reference() -> None:
        with torch.no_grad():
            frozen(**batch)

    reference()  # warm-up
    for phase, step in phases:
        result[f"{phase}_s"], result[f"{phase}_reference_s"], result[f"{phase}_ratio"] = paired(
            step, reference, steps, device
        )
    if not train_step:
        result.update(train_s=result["infer_s"], train_ratio=result["infer_ratio"])
    return finish(result, batch_size)


def finish(result: dict, batch_size: int) -> dict:
    result["adapter_bytes"] = 4 * result["trainable_params"]
    result["train_samples_per_s"] = batch_size / result["train_s"]
    result["infer_samples_per_s"] = batch_size / result["infer_s"]
    return result


def run_all(
    size: str, batch: int, steps: int, device: str, dtype: str, methods: list[str], compile_backend: str
) -> tuple[list[dict], dict[str, str]]:
    """Each method in its own process; one that fails is reported (its error's end) and the others still run."""
    rows, failed = [], {}
    for method in methods:
        command = [sys.executable, __file__, "--worker", method, "--size", size, "--batch", str(batch)]
        command += ["--steps", str(steps), "--device", device, "--dtype", dtype, "--compile-backend", compile_backend]
        done = subprocess.run(command, capture_output=True, text=True, cwd=HERE)
        if done.returncode != 0:
            failed[method] = done.stderr[-3000:]
            print(f"  FAILED {method}:\n{failed[method]}", file=sys.stderr)
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"  measured {method}", file=sys.stderr)
    reference = next((r for r in rows if r["method"] == "frozen"), None)
    if reference is None:
        raise RuntimeError("the frozen reference failed, so no ratio can be given: see its error above")
    for row in rows:
        row["peak_ratio"] = row["peak_bytes"] / reference["peak_bytes"]
    return rows, failed


def markdown(rows: list[dict], title: str) -> str:
    lines = [
        f"**{title}**",
        "",
        "| method | trainable | adapter | peak memory | train step | train samples/s | infer step | infer samples/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        frozen = r["method"].startswith("frozen")  # nothing trains
        adapter = "-" if frozen else f"{r['adapter_bytes'] / 1e6:.1f} MB"
        train = "-" if frozen else f"{r['train_s']:.2f} s ({r['train_ratio']:.2f}x)"
        train_rate = "-" if frozen else f"{r['train_samples_per_s']:.1f}"
        lines.append(
            f"| {DESCRIPTIONS[r['method']]} | {r['trainable_params']:,} | {adapter} "
            f"| {r['peak_bytes'] / 2**30:.2f} GiB ({r['peak_ratio']:.2f}x) | {train} | {train_rate} "
            f"| {r['infer_s']:.2f} s ({r['infer_ratio']:.2f}x) | {r['infer_samples_per_s']:.1f} |"
        )
    lines.append("")
    lines.append(
        "Ratios are to the frozen backbone's no-grad forward, timed in pairs with each step in the same process."
    )
    return "\n".join(lines)


def targets(rows: list[dict]) -> list[str]:
    """The efficiency targets, as measured."""
    by = {r["method"]: r for r in rows}
    mitp, cached, compiled = by.get("mitp"), by.get("mitp_cached"), by.get("mitp_compiled")
    checks = []
    if mitp:
        for what, ratio, bound in (("train step", "train_ratio", 1.35), ("peak memory", "peak_ratio", 1.3)):
            met = "met" if mitp[ratio] <= bound else "NOT met"
            checks.append(f"MITP {what} <= {bound:g}x frozen forward: {mitp[ratio]:.2f}x ({met})")
        for peer, wanted in (("lora", 1.5), ("full_ft", 2.5), ("pmf_style", 1.0)):
            if peer in by:
                speedup = by[peer]["train_ratio"] / mitp["train_ratio"]
                leaner = mitp["peak_bytes"] < by[peer]["peak_bytes"]
                checks.append(
                    f"MITP training throughput >= {wanted:g}x {peer}'s: {speedup:.2f}x "
                    f"({'met' if speedup >= wanted else 'NOT met'}); leaner: {'yes' if leaner else 'NO'}"
                )
    if mitp and compiled:
        speedup = mitp["train_ratio"] / compiled["train_ratio"]
        checks.append(
            f"compiled MITP training step >= 1.2x eager: {speedup:.2f}x ({'met' if speedup >= 1.2 else 'NOT met'})"
        )
    if "frozen_compiled" in by:
        checks.append(f"what compile gives a plain forward here: {1 / by['frozen_compiled']['infer_ratio']:.2f}x")
    if mitp and cached:
        checks.append(
            f"extraction cache speed-up of a training step >= 2x: {mitp['train_ratio'] / cached['train_ratio']:.2f}x"
        )
    return checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="b16")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--json", help="write the rows and the machine to this file")
    parser.add_argument(
        "--compile-backend", default="inductor", help="torch.compile backend of the compiled rows (tests: aot_eager)"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = worker(args.worker, args.size, args.batch, args.steps, args.device, args.dtype, args.compile_backend)
        print(json.dumps(result))
        return
    methods = args.methods.split(",")
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    if "frozen" not in methods:
        methods = ["frozen", *methods]  # every ratio is to it
    rows, failed = run_all(args.size, args.batch, args.steps, args.device, args.dtype, methods, args.compile_backend)
    machine = (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    if args.device == "cuda":
        machine = torch.cuda.get_device_name()
    title = f"CLIP {args.size} size, batch {args.batch}, text {TEXT_LENGTH} tokens, {args.dtype}"
    title += f", {args.device} ({machine}), {date.today()}"
    print(markdown(rows, title))
    print()
    print("\n".join(f"- {line}" for line in targets(rows)))
    if args.json:
        Path(args.json).write_text(json.dumps({"title": title, "rows": rows, "failed": failed}, indent=2))
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)} (errors above)")


if __name__ == "__main__":
    main()
