"""bf16 linear layers on a CPU through oneDNN's fused kernel (``torch.ops.mkldnn._linear_pointwise``, the one
torch's compiler emits): the bias added inside the matrix product, and the GELU of a transformer's feed-forward
layer applied as the product is written. Eager torch runs both as extra passes over memory (the bias copied into the
output first, then GELU over the whole intermediate activation): on a bf16 CPU they were ~10 % of an encode, and
fusing them gave 1.1-1.2x (``benchmarks/encode_bf16.py``). The same arithmetic, rounded once less: cosine to the
unfused vectors 0.99998. Where torch's oneDNN has no bf16 kernel, nothing changes."""

from __future__ import annotations

import functools
from typing import Any

# a feed-forward layer as transformers' BERT family (BERT, RoBERTa, XLM-R, MPNet, ELECTRA, ...) names it
FEED_FORWARD = ("dense", "intermediate_act_fn")


@functools.cache
def fused_kernel_works() -> bool:
    """Whether the fused kernel runs here and gives what ``F.linear`` then GELU give (checked once a process)."""
    import torch
    import torch.nn.functional as F

    try:
        if not (torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()):
            return False
        x, w, b = (torch.randn(*shape, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
                   for shape in ((2, 3, 64), (32, 64), (32,)))
        got = torch.ops.mkldnn._linear_pointwise(x, w, b, "gelu", [], "none")
        return bool(torch.allclose(got.float(), F.gelu(F.linear(x.float(), w.float(), b.float())), atol=0.1, rtol=0.02))
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


def _gelu_algorithm(act: Any) -> str | None:
    """``none`` (exact) or ``tanh`` where ``act`` is a GELU the kernel computes alike, else None."""
    import torch

    if isinstance(act, torch.nn.GELU):
        return act.approximate
    if type(act).__name__ == "GELUActivation" and getattr(act, "act", None) is torch.nn.functional.gelu:
        return "none"  # transformers' "gelu"
    return None


@functools.cache
def _fused_linear() -> type:
    import torch

    class FusedLinear(torch.nn.Module):
        """A linear layer's weight and bias (the same parameters), its product through one oneDNN kernel that then
        applies ``attr`` (``none``, or ``gelu`` with ``algorithm`` ``none`` or ``tanh``)."""

        def __init__(self, linear: torch.nn.Linear, attr: str = "none", algorithm: str = "") -> None:
            super().__init__()
            self.weight, self.bias, self.attr, self.algorithm = linear.weight, linear.bias, attr, algorithm

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, self.attr, [], self.algorithm)

    return FusedLinear


def fuse_linears(net: Any) -> int:
    """Put fused layers in place of ``net``'s bf16 ``nn.Linear`` layers, with a feed-forward layer's GELU taken
    into its first one (:data:`FEED_FORWARD`); returns how many layers were replaced (0: none, left as it was)."""
    import torch

    def bf16_linear(m: Any) -> bool:
        return type(m) is torch.nn.Linear and m.weight.dtype == torch.bfloat16 and m.weight.device.type == "cpu"

    if not fused_kernel_works():
        return 0
    count = 0
    for module in list(net.modules()):
        dense, act = (getattr(module, name, None) for name in FEED_FORWARD)
        if bf16_linear(dense) and (algorithm := _gelu_algorithm(act)) is not None:
            setattr(module, FEED_FORWARD[0], _fused_linear()(dense, "gelu", algorithm))
            setattr(module, FEED_FORWARD[1], torch.nn.Identity())
            count += 1
        for name, child in list(module.named_children()):
            if bf16_linear(child):
                setattr(module, name, _fused_linear()(child))
                count += 1
    return count
