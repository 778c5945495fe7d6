"""The HydraLoRA layer: one shared A, N B heads and a per-token router on a frozen linear layer.

HydraLoRA (arXiv 2404.19245; reference `HydraLoRA/peft/tuners/lora.py`, class `Linear`):
`h = W0 x + s * sum_n softmax(R x)_n * B_n A dropout(x)`, `s = alpha / r`, the router R evaluated per token, dense
(no top-k). The N heads run together: the shared rank-space activation `z = A x` is copied once per head, scaled by
that head's router weight, and sent through the stacked heads `[B_1 ... B_N]` in one matmul (2 matmuls besides the
router's, where the reference loop runs A and one B per head: 2N). `RouterLoadRecorder` keeps the routers' mean
weights while a batch generates (for the router-load plots).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from methods.multi_lora import find_decoder_layers

PARTS = ("lora_A", "lora_B", "router")


@dataclass(frozen=True)
class HydraShape:
    """What fixes the layout of a HydraLoRA model (saved beside its weights so they can be loaded back)."""

    rank: int
    alpha: float
    dropout: float
    heads: int
    target_modules: tuple[str, ...]


def router_weights(x: torch.Tensor, router: torch.Tensor) -> torch.Tensor:
    """softmax(R x) per token: x (..., d_in), R (N, d_in) -> (..., N); in float32, as the reference computes it."""
    return torch.softmax(F.linear(x, router).float(), dim=-1).to(x.dtype)


def mix_heads(rank_activations: torch.Tensor, weights: torch.Tensor, heads_B: torch.Tensor) -> torch.Tensor:
    """`sum_n w_n B_n z` for every token in one matmul: z (..., r), w (..., N), B (N, d_out, r) -> (..., d_out)."""
    heads, out_features, rank = heads_B.shape
    weighted = (weights.unsqueeze(-1) * rank_activations.unsqueeze(-2)).flatten(-2)  # (..., N * r), head-major
    return F.linear(weighted, heads_B.permute(1, 0, 2).reshape(out_features, heads * rank))


class HydraLoraLinear(nn.Module):
    """A frozen `nn.Linear` plus HydraLoRA: `lora_A` (r, d_in), `lora_B` (N, d_out, r), `router` (N, d_in)."""

    def __init__(self, base: nn.Linear, shape: HydraShape, generator: torch.Generator):
        super().__init__()
        self.base = base
        self.scaling = shape.alpha / shape.rank
        self.dropout = nn.Dropout(shape.dropout)
        A = torch.empty(shape.rank, base.in_features)
        router = torch.empty(shape.heads, base.in_features)
        # Reference `reset_parameters`: Kaiming-uniform A and router (nn.Linear's init), zero B heads.
        nn.init.kaiming_uniform_(A, a=math.sqrt(5), generator=generator)
        nn.init.kaiming_uniform_(router, a=math.sqrt(5), generator=generator)
        like = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(A.to(**like))
        self.lora_B = nn.Parameter(torch.zeros(shape.heads, base.out_features, shape.rank, **like))
        self.router = nn.Parameter(router.to(**like))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = router_weights(x, self.router)  # the router sees x itself; dropout only feeds A (reference)
        rank_activations = F.linear(self.dropout(x), self.lora_A)
        return self.base(x) + self.scaling * mix_heads(rank_activations, weights, self.lora_B)


def _target_path(block: nn.Module, target: str, layer: int) -> str:
    matches = [name for name, module in block.named_modules() if name.rsplit(".", 1)[-1] == target]
    linear = [name for name in matches if isinstance(block.get_submodule(name), nn.Linear)]
    if len(linear) != 1:
        found = sorted({name.rsplit(".", 1)[-1] for name, m in block.named_modules() if isinstance(m, nn.Linear)})
        raise ValueError(
            f"hydralora target_modules: '{target}' matches {len(linear)} Linear layers in decoder layer {layer}, "
            f"need exactly 1; Linear layers there: {', '.join(found)}"
        )
    return linear[0]


def attach_hydra_layers(model: nn.Module, shape: HydraShape, seed: int) -> list[list[HydraLoraLinear]]:
    """Wrap every target projection of every decoder layer in a HydraLoraLinear, in place; freeze the base model.

    Returns the new layers as a grid, `[decoder layer][position in shape.target_modules]`.
    """
    model.requires_grad_(False)
    generator = torch.Generator().manual_seed(seed)
    grid = []
    for index, block in enumerate(find_decoder_layers(model)):
        row = []
        for target in shape.target_modules:
            parent_name, _, attribute = _target_path(block, target, index).rpartition(".")
            parent = block.get_submodule(parent_name) if parent_name else block
            layer = HydraLoraLinear(getattr(parent, attribute), shape, generator).train(model.training)
            setattr(parent, attribute, layer)
            row.append(layer)
        grid.append(row)
    return grid


def hydra_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every HydraLoRA tensor of `model`, keyed `<module path>.<lora_A|lora_B|router>` (for safetensors)."""
    return {
        f"{name}.{part}": getattr(module, part).detach().cpu().contiguous()
        for name, module in model.named_modules()
        if isinstance(module, HydraLoraLinear)
        for part in PARTS
    }


def load_hydra_tensors(model: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Copy saved HydraLoRA tensors into `model`'s layers; `source` names the file in errors."""
    modules = {name: module for name, module in model.named_modules() if isinstance(module, HydraLoraLinear)}
    expected = {f"{name}.{part}" for name in modules for part in PARTS}
    if set(tensors) != expected:
        missing, unexpected = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        raise ValueError(
            f"{source}: HydraLoRA tensors do not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    with torch.no_grad():
        for key, tensor in tensors.items():
            name, _, part = key.rpartition(".")
            parameter = getattr(modules[name], part)
            if parameter.shape != tensor.shape:
                shapes = f"{tuple(tensor.shape)}, the model needs {tuple(parameter.shape)}"
                raise ValueError(f"{source}: '{key}' has shape {shapes}")
            parameter.copy_(tensor)


class RouterLoadRecorder:
    """Per generated example, the mean router weight of every (decoder layer, projection, head) over its tokens.

    The prompt's tokens and every generated token fed back to the model count; padding, including what a finished
    row is fed while the rest of its batch still generates, does not.
    """

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id
        self.loads: dict[int, torch.Tensor] = {}  # prompt position -> (layers, projections, heads)

    @contextlib.contextmanager
    def recording(self, model: torch.nn.Module, layers: list[list[HydraLoraLinear]], inputs: dict):
        """Hooks `model` and `layers` while one batch generates; `inputs["indices"]` are the rows' prompt positions."""
        rows = list(inputs["indices"])
        device = layers[0][0].router.device  # sums stay on the model's device: no copy per decoding step
        sums = torch.zeros(len(rows), len(layers), len(layers[0]), layers[0][0].router.shape[0], device=device)
        counts = torch.zeros(len(rows), device=device)
        valid: dict[str, torch.Tensor] = {}

        def count_tokens(module, args, kwargs):
            input_ids = kwargs["input_ids"] if "input_ids" in kwargs else args[0]
            mask = input_ids != self.pad_token_id
            if kwargs.get("attention_mask") is not None:
                mask &= kwargs["attention_mask"][:, -input_ids.shape[1] :].bool()
            valid["mask"] = mask.float()
            counts.add_(valid["mask"].sum(1))

        def add_load(layer_index: int, position: int):
            def hook(module, args, output):
                weights = router_weights(args[0], module.router).float()
                sums[:, layer_index, position] += (weights * valid["mask"].unsqueeze(-1)).sum(1)

            return hook

        handles = [model.register_forward_pre_hook(count_tokens, with_kwargs=True)]
        for layer_index, row in enumerate(layers):
            handles += [layer.register_forward_hook(add_load(layer_index, p)) for p, layer in enumerate(row)]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
        for row, index in enumerate(rows):
            self.loads[index] = (sums[row] / counts[row].clamp(min=1)).cpu()

    def loads_by_id(self, example_ids: list[str]) -> dict[str, torch.Tensor]:
        """The recorded loads keyed by example id, given the ids in prompt order (what the runner saves)."""
        return {example_id: self.loads[index].contiguous() for index, example_id in enumerate(example_ids)}
