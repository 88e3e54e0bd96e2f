"""Per-layer model summary: parameters, output shape, FLOPs and activation memory (Géron ch. 14, exercise 2).

FLOPs come from ``torch.utils.flop_counter`` (a multiply-add counts as 2 FLOPs, so GFLOPs = 2 × GMACs; the
"GFLOPS" in torchvision's tables are multiply-adds). Memory follows the book's reasoning (ch. 14,
"Memory Requirements"):

- inference needs the weights plus, at the peak, the input and output of one layer (earlier activations can
  be released): ``params + max over layers of (input + output)``;
- training keeps every layer's output for back-propagation: ``params + batch × (input + Σ outputs)``.

Layers that work in place (``ReLU(inplace=True)``) allocate nothing and count no activation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

BYTES = {"fp32": 4, "fp16": 2}


@dataclass
class LayerInfo:
    """One leaf module's figures for one input image."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    flops: int
    input_numel: int
    output_numel: int  # 0 for an in-place layer


@dataclass
class ModelSummary:
    """The layers of a model on one input, and totals; ``str()`` prints a table."""

    input_shape: tuple[int, ...]
    layers: list[LayerInfo] = field(default_factory=list)
    total_params: int = 0
    total_flops: int = 0

    def activations(self) -> int:
        """Numbers stored by all layers' outputs for one image."""
        return sum(layer.output_numel for layer in self.layers)

    def inference_bytes(self, precision: str = "fp32") -> int:
        """Weights + the largest (input + output) of a single layer."""
        peak = max((layer.input_numel + layer.output_numel for layer in self.layers), default=0)
        return (self.total_params + peak) * BYTES[precision]

    def training_bytes(self, batch_size: int, precision: str = "fp32") -> int:
        """Weights + a batch of inputs and of every layer's output (kept for the backward pass)."""
        per_image = self.activations() + int(torch.Size(self.input_shape[1:]).numel())
        return (self.total_params + batch_size * per_image) * BYTES[precision]

    def __str__(self) -> str:
        rows = [f"{'layer':<32} {'type':<18} {'output':<20} {'params':>12} {'MFLOPs':>10} {'act fp32':>10}"]
        for layer in self.layers:
            rows.append(
                f"{layer.name:<32} {layer.kind:<18} {'×'.join(map(str, layer.output_shape)):<20} "
                f"{layer.params:>12,} {layer.flops / 1e6:>10.1f} {_mb(layer.output_numel * 4):>10}"
            )
        rows.append(
            f"total: {self.total_params:,} parameters, {self.total_flops / 1e9:.3f} GFLOPs per image, "
            f"inference ≥ {_mb(self.inference_bytes())} (fp32) / {_mb(self.inference_bytes('fp16'))} (fp16)"
        )
        return "\n".join(rows)


def _mb(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.2f} MB"


def model_summary(model: nn.Module, input_size: tuple[int, ...] | None = None) -> ModelSummary:
    """Run one image (``input_size`` = C, H, W; default: the model's ``default_cfg``) and collect the figures."""
    if input_size is None:
        input_size = tuple(model.default_cfg["input_size"])
    x = torch.zeros(1, *input_size)
    records: dict[str, dict] = {}
    hooks = []
    leaves = {name: m for name, m in model.named_modules() if name and not list(m.children())}

    def record(name: str):
        def hook(module: nn.Module, inputs: tuple, output: object) -> None:
            if not isinstance(output, torch.Tensor):
                return
            first = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
            in_place = first is not None and output.data_ptr() == first.data_ptr()
            records[name] = {
                "output_shape": tuple(output.shape[1:]),
                "input_numel": first[0].numel() if first is not None else 0,
                "output_numel": 0 if in_place else output[0].numel(),
            }

        return hook

    for name, module in leaves.items():
        hooks.append(module.register_forward_hook(record(name)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    flops_by_module = {k: sum(v.values()) for k, v in counter.get_flop_counts().items()}
    root = type(model).__name__
    summary = ModelSummary(input_shape=(1, *input_size))
    for name, seen in records.items():
        module = leaves[name]
        summary.layers.append(
            LayerInfo(
                name=name,
                kind=type(module).__name__,
                output_shape=seen["output_shape"],
                params=sum(p.numel() for p in module.parameters(recurse=False)),
                flops=flops_by_module.get(f"{root}.{name}", 0),
                input_numel=seen["input_numel"],
                output_numel=seen["output_numel"],
            )
        )
    summary.total_params = sum(p.numel() for p in model.parameters())
    summary.total_flops = flops_by_module.get("Global", 0)
    return summary
