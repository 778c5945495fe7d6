"""Several frozen LoRA adapters on one linear layer, mixed by per-layer weights, in two matmuls.

`h' = W0 x + sum_i w_i * s_i * B_i A_i x` (LoRA-Flow eq. 2 with `delta_h_i = s_i B_i A_i x`). The adapters' A matrices
are stacked along the rank axis (ranks may differ), so the sum is one matmul into rank space, a per-rank scale
`w_{owner(j)} * s_{owner(j)}`, and one matmul out: 2 matmuls for k adapters instead of 2k. With LoRA dropout in
training mode (`AdapterInputDropout`) each adapter's A sees its own masked copy of x, so the matmul into rank space
runs once per adapter; in eval mode, or without dropout, the layer is the exact 2-matmul fusion.
"""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import torch
from torch import nn

from methods.lora_adapter import AdapterError, LoraAdapter, LoraModule

LAYER_INDEX_PATTERN = re.compile(r"\.(?:layers|h|blocks)\.(\d+)\.")


class FusionWeights:
    """The adapter weights one decoder layer uses for the current forward pass.

    `value` is a k-vector (task-level weights) or a (batch, seq, k) tensor (per-token weights); whoever owns the
    layer's policy (a static method, a LoRA-Flow gate hook) writes it before the layer runs.
    """

    def __init__(self, value: torch.Tensor | None = None):
        self.value = value
        self._memo_source: torch.Tensor | None = None
        self._memo_version = -1
        self._memo: dict = {}

    def per_rank(self, owner: torch.Tensor, scale: torch.Tensor, layout: tuple) -> torch.Tensor:
        """`value[..., owner] * scale`: each stacked rank's adapter weight times that adapter's LoRA scaling.

        The projections of a layer whose adapters have the same ranks and scalings (`layout`) share one result per
        value, so the gather runs once per layer, not once per projection. A value changed in place is recomputed;
        so is a trainable leaf (each backward frees what was computed from it).
        """
        value = self.value
        if value.requires_grad and value.is_leaf:
            return value.to(scale).index_select(-1, owner) * scale
        if self._memo_source is not value or self._memo_version != value._version:
            self._memo_source, self._memo_version, self._memo = value, value._version, {}
        key = (layout, scale.device, scale.dtype)
        if key not in self._memo:
            self._memo[key] = value.to(scale).index_select(-1, owner) * scale
        return self._memo[key]


class AdapterInputDropout:
    """LoRA dropout on the adapters' input, `B_i A_i dropout_i(x)`, with an independent mask per adapter (as in
    thunlp/LoRAFlow, where each adapter's `LowRankLinear` owns an `nn.Dropout`; train/ModelCenter/.../layer/lora.py).

    One object serves every layer of a model; its masks come from its own streams seeded with `seed`, so a fit is
    repeatable and torch's global random state is left alone. On CPU a mask is one raw 32-bit draw per entry from
    numpy's PCG64 (an entry is dropped when its draw is below p * 2^32): masks from torch's CPU generator (mt19937,
    one float at a time) took about 30 % of a SmolLM2 LoRA-Flow step, these are 3.7x cheaper and the step 1.44x
    faster (bench/speed/smollm2_training.py). On other devices, torch's own generator on that device.
    """

    def __init__(self, probability: float, seed: int):
        if not 0.0 <= probability < 1.0:
            raise ValueError(f"adapter dropout probability {probability}: must be in [0, 1)")
        self.probability, self.seed = probability, seed
        self._threshold = np.uint32(round(probability * 2**32))  # p < 1, so at most 2^32 - 1
        self._cpu_bits = np.random.PCG64(seed)
        self._generators: dict[torch.device, torch.Generator] = {}

    def keep_mask(self, shape: torch.Size, device: torch.device) -> torch.Tensor:
        """A fresh boolean mask of `shape`: True (kept) with probability 1 - p, independently per entry."""
        if device.type == "cpu":
            count = math.prod(shape)
            draws = self._cpu_bits.random_raw((count + 1) // 2).view(np.uint32)[:count]
            return torch.from_numpy(draws >= self._threshold).view(shape)
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device).manual_seed(self.seed)
        return torch.rand(shape, generator=self._generators[device], device=device) >= self.probability

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """`x` with a fresh mask, kept entries scaled by 1 / (1 - p) (inverted dropout, as `nn.Dropout`)."""
        return x * self.keep_mask(x.shape, x.device).to(x.dtype) / (1.0 - self.probability)


class MultiLoraLinear(nn.Module):
    """A frozen `nn.Linear` plus k frozen LoRA adapters whose outputs are mixed by `weights.value`."""

    def __init__(self, base: nn.Linear, loras: list[LoraModule | None], weights: FusionWeights,
                 dropout: AdapterInputDropout | None = None):  # fmt: skip
        super().__init__()
        self.base = base
        self.weights = weights
        self.dropout = dropout
        self.num_adapters = len(loras)
        present = [(index, lora) for index, lora in enumerate(loras) if lora is not None]
        device, dtype = base.weight.device, base.weight.dtype
        stacked_A = torch.cat([lora.A for _, lora in present]) if present else base.weight.new_zeros(0, base.in_features)
        stacked_B = (
            torch.cat([lora.B for _, lora in present], dim=1) if present else base.weight.new_zeros(base.out_features, 0)
        )
        owner = [index for index, lora in present for _ in range(lora.rank)]
        scale = [lora.scaling for _, lora in present for _ in range(lora.rank)]
        self.rank_layout = (tuple(owner), tuple(scale))
        ends = itertools.accumulate(lora.rank for _, lora in present)
        self.adapter_ranks = [slice(end - lora.rank, end) for end, (_, lora) in zip(ends, present)]  # columns of A^T
        # Stored transposed (d_in x R, R x d_out): CPU GEMMs with a small inner size R run about 2x faster this way.
        self.register_buffer("stacked_A_t", stacked_A.t().to(device, dtype).contiguous())
        self.register_buffer("stacked_B_t", stacked_B.t().to(device, dtype).contiguous())
        self.register_buffer("rank_owner", torch.tensor(owner, dtype=torch.long, device=device))
        self.register_buffer("rank_scale", torch.tensor(scale, dtype=dtype, device=device))
        self.train(base.training)  # a new module starts in training mode; follow the model it joins

    @property
    def stacked_A(self) -> torch.Tensor:
        """The adapters' A matrices stacked along the rank axis (R x d_in)."""
        return self.stacked_A_t.t()

    @property
    def stacked_B(self) -> torch.Tensor:
        """The adapters' B matrices stacked along the rank axis (d_out x R)."""
        return self.stacked_B_t.t()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output = self.base(x)
        if self.weights.value is None or self.rank_owner.numel() == 0:
            return output
        rank_weights = self.weights.per_rank(self.rank_owner, self.rank_scale, self.rank_layout)
        return output + torch.matmul(self._rank_space(x) * rank_weights, self.stacked_B_t)

    def _rank_space(self, x: torch.Tensor) -> torch.Tensor:
        """`A x` for every stacked rank; with dropout while training, adapter i's ranks see `dropout_i(x)`."""
        if self.dropout is None or self.dropout.probability == 0.0 or not self.training:
            return torch.matmul(x, self.stacked_A_t)
        return torch.cat([torch.matmul(self.dropout(x), self.stacked_A_t[:, ranks]) for ranks in self.adapter_ranks], -1)


def layer_index(module_name: str) -> int:
    """The decoder-layer number in a module path such as `model.layers.3.self_attn.q_proj`."""
    match = LAYER_INDEX_PATTERN.search(module_name)
    if match is None:
        raise AdapterError(f"module '{module_name}' is not inside a numbered decoder layer; cannot attach a fused LoRA")
    return int(match.group(1))


def find_decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The model's stack of decoder blocks (the longest ModuleList named layers/h/blocks)."""
    candidates = [
        module
        for name, module in model.named_modules()
        if isinstance(module, nn.ModuleList) and name.rsplit(".", 1)[-1] in ("layers", "h", "blocks")
    ]
    if not candidates:
        raise ValueError(f"{type(model).__name__}: no decoder layer list (layers/h/blocks) found")
    return max(candidates, key=len)


def attach_adapters(model: nn.Module, adapters: list[LoraAdapter], dropout: AdapterInputDropout | None = None
                    ) -> list[FusionWeights]:  # fmt: skip
    """Replace every adapted Linear in `model` with a MultiLoraLinear; return one FusionWeights per decoder layer.

    The model is changed in place and its own parameters are frozen; adapter i's weight in layer l is
    `slots[l].value[..., i]`. With `dropout`, the adapters' inputs are dropped out while the model trains.
    """
    model.requires_grad_(False)
    slots = [FusionWeights() for _ in range(len(find_decoder_layers(model)))]
    module_names = sorted({name for adapter in adapters for name in adapter.modules})
    for module_name in module_names:
        parent_name, _, attribute = module_name.rpartition(".")
        parent = model.get_submodule(parent_name)
        base = getattr(parent, attribute)
        loras = [adapter.modules.get(module_name) for adapter in adapters]
        setattr(parent, attribute, MultiLoraLinear(base, loras, slots[layer_index(module_name)], dropout))
    return slots


def set_static_weights(slots: list[FusionWeights], weights: list[float] | torch.Tensor) -> None:
    """Give every layer the same task-level adapter weights."""
    value = torch.as_tensor(weights, dtype=torch.float32)
    for slot in slots:
        slot.value = value
