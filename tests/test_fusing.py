"""bf16 linear layers fused with their bias and a feed-forward layer's GELU (oneDNN on a CPU): the same outputs,
whether or not this CPU has the kernel (where it has not, nothing changes)."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

from transformers.activations import ACT2FN  # noqa: E402

from minenegs.encode.fusing import fused_kernel_works, fuse_linears  # noqa: E402


class FeedForward(torch.nn.Module):
    """A transformer feed-forward layer as transformers' BERT family names its parts."""

    def __init__(self, act: torch.nn.Module) -> None:
        super().__init__()
        self.dense, self.intermediate_act_fn, self.out = torch.nn.Linear(48, 96), act, torch.nn.Linear(96, 48, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.intermediate_act_fn(self.dense(x))) + x


def net() -> torch.nn.Module:
    torch.manual_seed(0)
    acts = (ACT2FN["gelu"], torch.nn.GELU(approximate="tanh"), torch.nn.ReLU())  # exact, tanh, and no GELU
    return torch.nn.Sequential(*(FeedForward(a) for a in acts), torch.nn.Linear(48, 8))


def test_fused_layers_give_the_same_outputs_and_only_gelu_is_taken_in():
    x = torch.randn(3, 11, 48, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    plain = net().to(torch.bfloat16).eval()
    fused = copy.deepcopy(plain)
    count = fuse_linears(fused)
    kinds = [type(m).__name__ for m in fused.modules() if type(m).__name__ in ("Linear", "FusedLinear")]
    if not fused_kernel_works():  # no bf16 oneDNN kernel here: the network is left as it was
        assert count == 0 and kinds == ["Linear"] * 7
        return
    assert count == 7 and kinds == ["FusedLinear"] * 7
    assert [type(b.intermediate_act_fn).__name__ for b in fused[:3]] == ["Identity", "Identity", "ReLU"]
    assert [(b.dense.attr, b.dense.algorithm) for b in fused[:3]] == [("gelu", "none"), ("gelu", "tanh"), ("none", "")]
    assert torch.equal(fused[0].dense.weight, plain[0].dense.weight)
    with torch.no_grad():
        want, got = plain(x).float(), fused(x).float()
    assert torch.nn.functional.cosine_similarity(want.flatten(1), got.flatten(1)).min() > 0.999
    assert (want - got).abs().max() < 0.1 * want.abs().max()


def test_fp32_layers_are_left_alone():
    fp32 = net()
    assert fuse_linears(fp32) == 0
    assert [type(m).__name__ for m in fp32.modules() if "Linear" in type(m).__name__] == ["Linear"] * 7
    assert type(fp32[0].intermediate_act_fn).__name__ == "GELUActivation"


def test_a_compiled_network_of_fused_layers_is_kept_apart(tmp_path):
    from minenegs.encode.compiling import package_path

    bf16, fp32 = (package_path(tmp_path, "f" * 64, p, 256, "cpu").name for p in ("bf16", "fp32"))
    assert bf16.endswith("-fused.pt2") == fused_kernel_works() and not fp32.endswith("-fused.pt2")
    assert bf16.replace("-fused", "").replace("bf16", "fp32") == fp32
