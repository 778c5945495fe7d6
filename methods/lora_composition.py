"""LoraHub's composition operator, and a linear layer that scores several compositions in one forward pass.

LoraHub (arXiv 2307.13269, eq. 1; `lorahub/algorithm.py`, `get_score`) weights and sums every LoRA tensor, A and B
alike: `A = sum_i w_i A_i`, `B = sum_i w_i B_i`. The update `B A x = (sum_i w_i B_i)(sum_j w_j A_j) x` therefore has
cross terms `w_i w_j B_i A_j`: it is *not* the weighted sum of the adapters' outputs that `methods.multi_lora` computes.

Scalings: the reference assumes one shared LoRA config, and the scaling it applies is the *last* candidate's
`alpha / r`: `load_base_model_and_lora_modules` loads the first candidate as adapter "default", then calls
`PeftModel.from_pretrained` on the same base model for every candidate, and with peft 0.21.2 each call re-creates
"default" in the already-wrapped layers (`LoraLayer.update_layer` sets `scaling`); `set_peft_model_state_dict` then
loads tensors only (tests/test_lorahub.py pins this). Here each adapter's own scaling `s_i` is folded into its B before
summing, so the composed module has scaling 1 (exported with `lora_alpha = r`). With equal scalings this is exactly
the reference's `s (sum w B)(sum w A)`; with unequal ones it is the natural generalisation, and a one-hot weight
vector gives back that adapter exactly. Ranks must be equal per module, since A and B of different ranks cannot be
summed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from methods.lora_adapter import AdapterError, LoraAdapter, LoraModule


@dataclass
class StackedLora:
    """One module's candidate tensors: A is (k, r, d_in), B is (k, d_out, r) with each adapter's scaling folded in."""

    A: torch.Tensor
    B: torch.Tensor


def _module_rank(adapters: list[LoraAdapter], module_name: str) -> int:
    ranks = {adapter.name: adapter.modules[module_name].rank for adapter in adapters if module_name in adapter.modules}
    if len(set(ranks.values())) > 1:
        listed = ", ".join(f"'{name}' r={rank}" for name, rank in ranks.items())
        raise AdapterError(
            f"LoraHub sums A and B across adapters, so their ranks must match; module '{module_name}' has {listed}"
        )
    return next(iter(ranks.values()))


def stack_candidate_tensors(adapters: list[LoraAdapter]) -> dict[str, StackedLora]:
    """Stack the candidates' A and scaled B per module; an adapter without a module contributes zeros there.

    Raises AdapterError naming the adapters whose ranks differ on a module.
    """
    if not adapters:
        raise AdapterError("LoraHub needs at least one candidate adapter")
    stacked = {}
    for module_name in sorted({name for adapter in adapters for name in adapter.modules}):
        rank = _module_rank(adapters, module_name)
        present = next(adapter.modules[module_name] for adapter in adapters if module_name in adapter.modules)
        zero = LoraModule(A=torch.zeros(rank, present.A.shape[1]), B=torch.zeros(present.B.shape[0], rank), scaling=0.0)
        modules = [adapter.modules.get(module_name, zero) for adapter in adapters]
        stacked[module_name] = StackedLora(
            A=torch.stack([module.A.float() for module in modules]),
            B=torch.stack([module.scaling * module.B.float() for module in modules]),
        )
    return stacked


def compose_lora_tensors(A: torch.Tensor, B: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """LoraHub eq. 1: `sum_i w_i A_i` and `sum_i w_i B_i`.

    `A` and `B` hold the k candidates along their first axis, e.g. (k, r, d_in) and (k, d_out, r) (or flattened);
    `weights` (k,) gives one composed pair, (c, k) gives c of them.
    """
    return torch.tensordot(weights, A, dims=1), torch.tensordot(weights, B, dims=1)


class CandidateLoraBank:
    """Every adapted module's candidate A and B, flattened side by side, so one matmul composes all modules at once.

    `compose(weights)` writes `sum_i w_i A_i` and `sum_i w_i B_i` of every module for c candidates into two (c, total)
    matrices, replacing the previous ones (no state dict is built or loaded); `composed(module)` views one module's part.
    Each part holds the transposes A^T (d_in, r) and B^T (r, d_out): `x @ A^T` on a contiguous A^T runs several times
    faster on CPU than on a transposed view of A.
    """

    def __init__(self, stacked: dict[str, StackedLora], device: torch.device, dtype: torch.dtype):
        self.layout, a_offset, b_offset = {}, 0, 0  # module -> where its A^T and B^T sit in the flat rows, and shapes
        for module_name, tensors in stacked.items():
            a_part = slice(a_offset, a_offset + tensors.A[0].numel())
            b_part = slice(b_offset, b_offset + tensors.B[0].numel())
            (_, rank, in_features), (_, out_features, _) = tensors.A.shape, tensors.B.shape
            self.layout[module_name] = (a_part, (in_features, rank), b_part, (rank, out_features))
            a_offset, b_offset = a_part.stop, b_part.stop
        self.A = torch.cat([tensors.A.transpose(1, 2).flatten(1) for tensors in stacked.values()], dim=1).to(device)
        self.B = torch.cat([tensors.B.transpose(1, 2).flatten(1) for tensors in stacked.values()], dim=1).to(device)
        self.dtype = dtype
        self.compose(torch.zeros(1, self.A.shape[0]))

    @torch.no_grad()
    def compose(self, weights: torch.Tensor) -> None:
        """Compose one LoRA per row of `weights` (c, k) for every module, in float32, kept in the model's dtype."""
        A, B = compose_lora_tensors(self.A, self.B, weights.to(self.A))
        self.composed_A, self.composed_B = A.to(self.dtype), B.to(self.dtype)

    def composed(self, module_name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Views of one module's composed tensors, transposed: A^T (c, d_in, r) and B^T (c, r, d_out)."""
        a_part, a_shape, b_part, b_shape = self.layout[module_name]
        count = self.composed_A.shape[0]
        return self.composed_A[:, a_part].view(count, *a_shape), self.composed_B[:, b_part].view(count, *b_shape)


class CandidateLoraLinear(nn.Module):
    """A frozen Linear plus one composed LoRA per candidate: block c of the batch uses candidate c's (A_c, B_c).

    The batch holds the same examples once per candidate, candidate-major, so `bmm` applies each candidate's own
    low-rank update `B_c A_c x`.
    """

    def __init__(self, base: nn.Linear, bank: CandidateLoraBank, module_name: str):
        super().__init__()
        self.base, self.bank, self.module_name = base, bank, module_name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output = self.base(x)
        A_t, B_t = self.bank.composed(self.module_name)
        rows = x.reshape(A_t.shape[0], -1, x.shape[-1])  # (candidates, examples * tokens, d_in)
        delta = torch.bmm(torch.bmm(rows, A_t), B_t)
        return output + delta.reshape(output.shape)


def attach_candidate_layers(model: nn.Module, stacked: dict[str, StackedLora]) -> CandidateLoraBank:
    """Wrap every module named in `stacked` (in place) so that the model scores several compositions at once."""
    first = model.get_submodule(next(iter(stacked)))
    bank = CandidateLoraBank(stacked, first.weight.device, first.weight.dtype)
    for module_name in stacked:
        parent_name, _, attribute = module_name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, attribute, CandidateLoraLinear(getattr(parent, attribute), bank, module_name))
    return bank


def detach_candidate_layers(model: nn.Module) -> None:
    """Put back the plain Linear layers that `attach_candidate_layers` wrapped."""
    wrapped = [name for name, module in model.named_modules() if isinstance(module, CandidateLoraLinear)]
    for module_name in wrapped:
        parent_name, _, attribute = module_name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, attribute, getattr(parent, attribute).base)


def composed_adapter(stacked: dict[str, StackedLora], weights: torch.Tensor, name: str, base_model: str = ""):
    """The single LoRA adapter LoraHub ends with for `weights` (k,): composed A and B, scaling 1."""
    modules = {}
    for module_name, tensors in stacked.items():
        A, B = compose_lora_tensors(tensors.A, tensors.B, weights.to(tensors.A))
        modules[module_name] = LoraModule(A=A.contiguous(), B=B.contiguous(), scaling=1.0)
    return LoraAdapter(name=name, modules=modules, base_model=base_model)
