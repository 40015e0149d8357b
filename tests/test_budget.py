"""The parameter budget of METHOD.md on a CLIP ViT-L/14-sized backbone (built on the meta device: no weights)."""

import torch
from helpers import adapter_module, script_module
from peft import get_peft_model
from safetensors import safe_open
from transformers import CLIPConfig, CLIPModel

from mitp_peft import MITPConfig

L14 = CLIPConfig(
    text_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
    vision_config=dict(
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, patch_size=14
    ),
    projection_dim=768,
)


def l14_with_mitp(**kwargs):
    with torch.device("meta"):
        base = CLIPModel(L14)
    assert sum(p.numel() for p in base.parameters()) == 427_616_513
    return get_peft_model(base, MITPConfig(num_labels=101, **kwargs))


def adapter_parts(model) -> dict[str, int]:
    adapter = adapter_module(model)
    return {
        "prompt": adapter.prompt.numel(),
        "text_to_vision": sum(p.numel() for p in adapter.hub.translate_text_to_vision.parameters()),
        "vision_to_text": sum(p.numel() for p in adapter.hub.translate_vision_to_text.parameters()),
        "head": sum(p.numel() for p in adapter.head.parameters()),
    }


def test_l14_with_a_linear_head_and_wide_translators_trains_the_papers_2025061_parameters(capsys):
    model = l14_with_mitp(head="linear", translator_hidden_size=512, head_uses_memory=False)
    model.print_trainable_parameters()
    assert "trainable params: 2,025,061 || all params: 429,641,574 || trainable%: 0.4713" in capsys.readouterr().out
    config = model.peft_config["default"]
    assert config.text_layers == [8, 9, 10, 11] and config.vision_layers == [20, 21, 22, 23]
    assert adapter_parts(model) == {
        "prompt": 6_144,
        "text_to_vision": 919_040,
        "vision_to_text": 918_784,
        "head": 181_093,
    }


def test_l14_defaults_are_the_papers_budget(capsys):
    """About 2M trainable (the paper's 2.0M): translators 768 <-> 256 <-> 1024, and the MLP head reads both pooled
    features, the 768-wide agreement product and the hub memory (768 + 1024): 4352 -> 256 -> 101."""
    model = l14_with_mitp()
    model.print_trainable_parameters()
    assert "trainable params: 2,066,277 || all params: 429,682,790 || trainable%: 0.4809" in capsys.readouterr().out
    assert 1_900_000 <= sum(adapter_parts(model).values()) <= 2_100_000
    assert adapter_parts(model) == {
        "prompt": 6_144,
        "text_to_vision": 768 * 256 + 256 + 256 * 1024 + 1024,
        "vision_to_text": 1024 * 256 + 256 + 256 * 768 + 768,
        "head": (1024 + 768 + 768 + 768 + 1024) * 256 + 256 + 256 * 101 + 101,
    }
    previous = l14_with_mitp(head_uses_memory=False, head_hidden_size=384)  # the head on pooled features only
    assert previous.get_nb_trainable_parameters()[0] == 1_948_261
    wide = l14_with_mitp(translator_hidden_size=512, head_hidden_size=512, head_uses_memory=False)
    assert wide.get_nb_trainable_parameters()[0] == 3_207_013


def test_l14_adapter_file_with_a_linear_head_is_about_8_mb(tmp_path):
    model = l14_with_mitp(head="linear", translator_hidden_size=512, head_uses_memory=False)
    model.base_model.mitp_adapters.to_empty(device="cpu")
    model.save_pretrained(tmp_path)
    path = tmp_path / "adapter_model.safetensors"
    with safe_open(path, "pt") as f:
        assert sum(torch.Size(f.get_slice(k).get_shape()).numel() for k in f.keys()) == 2_025_061
    assert 8_100_000 < path.stat().st_size < 8_110_000  # 2,025,061 fp32 values (8,100,244 bytes) + header


def test_budget_table_script():
    budget = script_module("benchmarks/budget.py")

    rows = {name: budget.budget_row(name, 101) for name in ("CLIP ViT-L/14", "ViT-B/16 + BERT-base (PMF)")}
    assert rows["CLIP ViT-L/14"]["trainable_params"] == 2_066_277
    assert rows["CLIP ViT-L/14"]["other_heads"]["linear"] == 1_288_037
    assert rows["CLIP ViT-L/14"]["backbone_params"] == 427_616_513
    assert rows["CLIP ViT-L/14"]["vision_layers"] == [20, 21, 22, 23]
    # ViT-B + BERT-base: 8 x 768 prompt, two 768 <-> 256 translators, head on two 768-wide poolers and the hub
    # memory (768 + 768).
    shared = 8 * 768 + 2 * (768 * 256 + 256 + 256 * 768 + 768)
    assert rows["ViT-B/16 + BERT-base (PMF)"]["other_heads"]["linear"] == shared + (768 + 768 + 1536) * 101 + 101
    mlp = (768 + 768 + 512 + 1536) * 256 + 256 + 256 * 101 + 101  # the dual encoder's projections are 512 wide
    assert rows["ViT-B/16 + BERT-base (PMF)"]["trainable_params"] == shared + mlp
    table = budget.markdown(list(rows.values()), 101)
    assert (
        "| CLIP ViT-L/14 | 427.6M | [8, 9, 10, 11] / [20, 21, 22, 23] | 2,066,277 | 0.48% | 8.3 MB | 1,288,037 "
        "| 1,365,605 | 1,288,138 |" in table
    )
