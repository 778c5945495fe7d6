"""LoRA-Flow's fusion gate: per-token, per-layer adapter weights `w^l_t = softmax(W^l x^l_t / T) + b^l`.

One gate per decoder layer reads the hidden state entering that layer (before its layer norm, like `lora_fusion_gate`
in thunlp/LoRAFlow train/ModelCenter/model_center/layer/blocks.py) and writes the weights into that layer's
`FusionWeights` slot, which every `MultiLoraLinear` of the layer reads: `h' = h + sum_i w^l_{t,i} delta_h_i`.
A forward pre-hook does this, so the same code serves training, a no-cache forward and `generate()` with a KV cache
(each decoding step's new token gets its own weights). Any method with per-token, per-layer adapter weights (X-LoRA
style classifiers included) can reuse the gate, the hook and the recorder.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from methods.multi_lora import FusionWeights, find_decoder_layers


def gate_weights(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, temperature: float = 1.0):
    """LoRA-Flow eq. 1, `softmax(W x / T) + b`: hidden (..., d), W (k, d), b (k,) -> weights (..., k)."""
    scores = F.linear(hidden, weight)
    if temperature != 1.0:  # the paper's T = 1 skips a division per layer and token
        scores = scores / temperature
    return torch.softmax(scores, dim=-1) + bias


def default_gate_bias(num_adapters: int) -> torch.Tensor:
    """`b = e_k - 1/k`: with W = 0 the gate gives (0, ..., 0, 1), i.e. the last adapter (the skill adapter) alone.

    For k = 2 this is the official init (-0.5, +0.5) (`weight_bias`, thunlp/LoRAFlow blocks.py).
    """
    bias = torch.full((num_adapters,), -1.0 / num_adapters)
    bias[-1] += 1.0
    return bias


class FusionGate(nn.Module):
    """One decoder layer's gate: `weight` is W^l (k x d), `bias` is b^l (k); both train."""

    def __init__(self, hidden_size: int, num_adapters: int, temperature: float = 1.0, bias: torch.Tensor | None = None):
        super().__init__()
        self.temperature = temperature
        # W = 0, as the official `Linear(..., cps=3)` initialises it (ModelCenter linear.py: init.zeros_).
        self.weight = nn.Parameter(torch.zeros(num_adapters, hidden_size))
        initial_bias = default_gate_bias(num_adapters) if bias is None else torch.as_tensor(bias, dtype=torch.float32)
        self.bias = nn.Parameter(initial_bias.clone())

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return gate_weights(hidden.to(self.weight.dtype), self.weight, self.bias, self.temperature)


class FusionWeightRecorder:
    """While `recording()`, keeps every forward's input token ids and each layer's gate weights (detached)."""

    def __init__(self, num_layers: int):
        self.num_layers = num_layers
        self.active = False
        self.token_ids: list[torch.Tensor] = []
        self.layer_weights: list[list[torch.Tensor]] = [[] for _ in range(num_layers)]

    @contextlib.contextmanager
    def recording(self):
        """Record one `generate()` call (a prompt forward, then one forward per new token)."""
        self.token_ids, self.layer_weights = [], [[] for _ in range(self.num_layers)]
        self.active = True
        try:
            yield self
        finally:
            self.active = False

    def recorded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The recorded call as (token ids (batch, T), weights (layers, batch, T, k)), on the CPU in float32."""
        token_ids = torch.cat(self.token_ids, dim=1).cpu()
        weights = torch.stack([torch.cat(steps, dim=1) for steps in self.layer_weights])
        return token_ids, weights.float().cpu()


def install_gates(model: nn.Module, slots: list[FusionWeights], gates: list[FusionGate], recorder=None) -> list:
    """Make each decoder layer compute its gate's weights into its slot before it runs; return the hook handles.

    Each gate becomes the submodule `fusion_gate` of its layer, so it follows `model.to()` and appears in
    `model.named_parameters()`. With a recorder, the input token ids and every layer's weights are kept too.
    """
    layers = find_decoder_layers(model)
    if not len(layers) == len(slots) == len(gates):
        raise ValueError(f"{len(layers)} decoder layers but {len(slots)} weight slots and {len(gates)} gates")
    handles = []
    for index, (layer, slot, gate) in enumerate(zip(layers, slots, gates)):
        layer.fusion_gate = gate
        hook = _GateHook(slot, gate, index, recorder)
        handles.append(layer.register_forward_pre_hook(hook, with_kwargs=True))
    if recorder is not None:
        handles.append(model.get_input_embeddings().register_forward_pre_hook(_TokenHook(recorder)))
    return handles


@dataclass
class _GateHook:
    slot: FusionWeights
    gate: FusionGate
    index: int
    recorder: FusionWeightRecorder | None

    def __call__(self, module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        weights = self.gate(hidden)
        self.slot.value = weights
        if self.recorder is not None and self.recorder.active:
            self.recorder.layer_weights[self.index].append(weights.detach())


@dataclass
class _TokenHook:
    recorder: FusionWeightRecorder

    def __call__(self, module, args):
        if self.recorder.active:
            self.recorder.token_ids.append(args[0].detach())


@dataclass
class ExampleTrace:
    """One example's recorded weights: `weights[l, t]` is layer l's weights while reading `token_ids[t]`.

    Positions 0..prompt_length-1 are the prompt (left padding removed), the rest are generated tokens fed back; so
    the weights at t produced token t + 1, and the answer's weights are positions prompt_length-1 .. T-2.
    """

    token_ids: torch.Tensor  # (T,) int64
    weights: torch.Tensor  # (layers, T, k) float32
    prompt_length: int


def example_trace(token_ids, weights, prompt_mask, row: int, stop_ids: set[int]) -> ExampleTrace:
    """Cut row `row` of a recorded batch: drop its left padding and everything after its first stop token.

    `token_ids` (batch, T) and `weights` (layers, batch, T, k) come from `FusionWeightRecorder.recorded()`;
    `prompt_mask` is the batch's (batch, P) attention mask of the left-padded prompts.
    """
    prompt_width = prompt_mask.shape[1]
    if not bool(prompt_mask[row, -1]):
        raise ValueError("recording fusion weights needs left-padded prompts (tokenizer.padding_side = 'left')")
    padding = int(prompt_width - prompt_mask[row].sum())
    end = token_ids.shape[1]
    for position in range(prompt_width, token_ids.shape[1]):
        if int(token_ids[row, position]) in stop_ids:
            end = position + 1  # keep the stop token itself: the step before it chose it
            break
    return ExampleTrace(
        token_ids=token_ids[row, padding:end].clone(),
        weights=weights[:, row, padding:end].clone(),
        prompt_length=prompt_width - padding,
    )


def pack_strings(strings: list[str]) -> dict[str, torch.Tensor]:
    """Strings as safetensors-storable tensors: their UTF-8 bytes concatenated, and byte offsets (len + 1)."""
    encoded = [text.encode("utf-8") for text in strings]
    offsets = torch.tensor([0] + [len(chunk) for chunk in encoded], dtype=torch.int64).cumsum(0)
    return {"utf8": torch.tensor(list(b"".join(encoded)), dtype=torch.uint8), "offsets": offsets}


def unpack_strings(data: torch.Tensor, offsets: torch.Tensor) -> list[str]:
    """The inverse of `pack_strings`."""
    raw = data.numpy().tobytes()
    bounds = offsets.tolist()
    return [raw[start:stop].decode("utf-8") for start, stop in zip(bounds, bounds[1:])]


def trace_tensors(example_id: str, trace: ExampleTrace, token_texts: list[str]) -> dict[str, torch.Tensor]:
    """One example's entries in a trace file: `<id>/weights`, `<id>/token_ids`, `<id>/prompt_length`,
    `<id>/token_text.utf8` and `<id>/token_text.offsets` (the text of each token, for plots without a tokenizer)."""
    tensors = {
        f"{example_id}/weights": trace.weights.contiguous(),
        f"{example_id}/token_ids": trace.token_ids.contiguous(),
        f"{example_id}/prompt_length": torch.tensor([trace.prompt_length], dtype=torch.int64),
    }
    for part, tensor in pack_strings(token_texts).items():
        tensors[f"{example_id}/token_text.{part}"] = tensor
    return tensors


def read_trace_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, tuple[ExampleTrace, list[str]]]:
    """The inverse of `trace_tensors` over a whole trace file: example id -> (trace, token texts)."""
    example_ids = sorted({key.rsplit("/", 1)[0] for key in tensors if key.endswith("/weights")})
    traces = {}
    for example_id in example_ids:
        trace = ExampleTrace(
            token_ids=tensors[f"{example_id}/token_ids"],
            weights=tensors[f"{example_id}/weights"],
            prompt_length=int(tensors[f"{example_id}/prompt_length"][0]),
        )
        texts = unpack_strings(tensors[f"{example_id}/token_text.utf8"], tensors[f"{example_id}/token_text.offsets"])
        traces[example_id] = (trace, texts)
    return traces
