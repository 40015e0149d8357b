"""A PMF-style baseline for cost comparison only (Li et al., CVPR 2023, "Efficient Multimodal Fusion via Interactive
Prompting"): prompts on the top K layers of both towers, and each fusion layer run twice, once with query prompts
that read one modality and once with context prompts plus the other modality's mapped queries. One head per
modality, logits averaged. Not a faithful PMF for accuracy; its compute and memory pattern is PMF's. Its prompts,
mappings and heads stay in float32 on a bf16 backbone, as MITP's adapter does, cast where they meet the towers.
"""

from __future__ import annotations

import torch
from torch import nn

from mitp_peft.towers import resolve_towers


class PMFStyle(nn.Module):
    def __init__(self, backbone: nn.Module, num_labels: int, num_layers: int = 4, prompt_length: int = 8) -> None:
        super().__init__()
        self.backbone = backbone.requires_grad_(False)
        self.towers = resolve_towers(backbone)
        text, vision = self.towers
        d_t, d_v = text.hidden_size, vision.hidden_size
        self.text_layers = list(range(text.num_layers - num_layers, text.num_layers))
        self.vision_layers = list(range(vision.num_layers - num_layers, vision.num_layers))
        self.query_text = nn.Parameter(torch.randn(num_layers, prompt_length, d_t) * 0.02)
        self.query_vision = nn.Parameter(torch.randn(num_layers, prompt_length, d_v) * 0.02)
        self.context_text = nn.Parameter(torch.randn(num_layers, prompt_length, d_t) * 0.02)
        self.context_vision = nn.Parameter(torch.randn(num_layers, prompt_length, d_v) * 0.02)
        self.vision_to_text = nn.ModuleList(nn.Linear(d_v, d_t) for _ in range(num_layers))
        self.text_to_vision = nn.ModuleList(nn.Linear(d_t, d_v) for _ in range(num_layers))
        self.head_text = nn.Linear(text.pooled_size, num_labels)
        self.head_vision = nn.Linear(vision.pooled_size, num_labels)
        self.prompt_length = prompt_length

    def forward(self, **inputs) -> torch.Tensor:
        text, vision = self.towers
        m = self.prompt_length
        states = {t: t.embed(inputs) for t in self.towers}
        masks = {t: [t.attention_mask(states[t], n) for n in (0, m, 2 * m)] for t in self.towers}
        with torch.no_grad():
            hidden = {
                t: t.run(states[t].hidden, masks[t][0], 0, first)
                for t, first in ((text, self.text_layers[0]), (vision, self.vision_layers[0]))
            }
        batch = hidden[text].shape[0]
        for k, (i_t, i_v) in enumerate(zip(self.text_layers, self.vision_layers, strict=True)):
            layer_t, layer_v = text.layers[i_t], vision.layers[i_v]
            u_t, u_v = hidden[text], hidden[vision]
            # Query pass: query prompts read each modality.
            q_t = self._run(text, layer_t, u_t, [self.query_text[k]], masks[text][1], batch)[:, -m:]
            q_v = self._run(vision, layer_v, u_v, [self.query_vision[k]], masks[vision][1], batch)[:, -m:]
            # Fusion pass: the same layers again, with context prompts and the other modality's mapped queries.
            fused_t = [self.context_text[k], _linear(self.vision_to_text[k], q_v)]
            fused_v = [self.context_vision[k], _linear(self.text_to_vision[k], q_t)]
            hidden[text] = self._run(text, layer_t, u_t, fused_t, masks[text][2], batch)[:, : u_t.shape[1]]
            hidden[vision] = self._run(vision, layer_v, u_v, fused_v, masks[vision][2], batch)[:, : u_v.shape[1]]
        pooled_t = text.pool(states[text], hidden[text])
        pooled_v = vision.pool(states[vision], hidden[vision])
        return (_linear(self.head_text, pooled_t) + _linear(self.head_vision, pooled_v)) / 2

    @staticmethod
    def _run(tower, layer, tokens, prompts, mask, batch) -> torch.Tensor:
        prompts = [(p.expand(batch, -1, -1) if p.dim() == 2 else p).to(tokens.dtype) for p in prompts]
        return tower.run_layer(layer, torch.cat([tokens, *prompts], dim=1), mask)


def _linear(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """A float32 trainable layer on a (maybe bf16) tower's states."""
    return layer(x.to(layer.weight.dtype))
