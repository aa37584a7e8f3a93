"""timm's ViT-M/16 (4 registers, GAP) at inference, in plain torch, for a fast start.

Importing timm costs ~3 s on top of torch (it registers every architecture and pulls torchvision's
model zoo); `vitsearch search FILE` should not pay that on every call. This module holds only
what timm's `VisionTransformer` computes in eval mode for this configuration, with the same
parameter names, so timm's own state dict loads into it unchanged. The parity tests compare it
with timm's model on the same weights (tests/indexer/test_fast_start.py); the model cache
(indexer/model/model_cache.py) fills it. The first run, and anything but a CPU, builds timm's model.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ViT", "VIT_CONFIGS"]

# The architectures this module reproduces, by timm model name (without the pretrained tag).
VIT_CONFIGS = {
    "vit_medium_patch16_reg4_gap_256": dict(img_size=256, patch_size=16, dim=512, depth=12, heads=8,
                                            mlp_ratio=4, reg_tokens=4),
}


class _PatchEmbed(nn.Module):
    def __init__(self, img_size: int, patch_size: int, dim: int):
        super().__init__()
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # NCHW -> NLC


class _LayerScale(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _Attention(dim, heads)
        self.ls1 = _LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _Mlp(dim, dim * mlp_ratio)
        self.ls2 = _LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class ViT(nn.Module):
    """No class token, registers prepended after the position embedding (timm's no_embed_class),
    mean of the patch tokens through fc_norm as the pre-logits; no classifier."""

    def __init__(self, img_size: int, patch_size: int, dim: int, depth: int, heads: int, mlp_ratio: int,
                 reg_tokens: int):
        super().__init__()
        self.patch_embed = _PatchEmbed(img_size, patch_size, dim)
        patches = self.patch_embed.grid_size[0] * self.patch_embed.grid_size[1]
        self.reg_token = nn.Parameter(torch.zeros(1, reg_tokens, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, patches, dim))
        self.blocks = nn.Sequential(*[_Block(dim, heads, mlp_ratio) for _ in range(depth)])
        self.fc_norm = nn.LayerNorm(dim, eps=1e-6)
        self.num_prefix_tokens = reg_tokens
        self.num_features = dim

    @classmethod
    def for_model(cls, model_name: str) -> ViT:
        """An empty model of that architecture (parameters on the meta device: load_state_dict
        with assign=True gives it weights without paying for an initialisation)."""
        with torch.device("meta"):
            return cls(**VIT_CONFIGS[model_name.partition(".")[0]])

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x) + self.pos_embed
        x = torch.cat([self.reg_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.blocks(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = True) -> torch.Tensor:
        if not pre_logits:
            raise ValueError("this model has no classifier: labels come from indexer.model.labels")
        return self.fc_norm(x[:, self.num_prefix_tokens:].mean(dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
