"""Pea-KD's shuffled parameter sharing (SPS, Cho and Kang 2020) for a fairseq encoder.

The encoder's layers run once as usual, then a chosen set of them runs again with the same
parameter objects: no new parameters. In that second pass the self-attention's query and key
projections (weights and biases) trade places, which transposes the attention scores; value,
output projection, FFN and LayerNorms are reused unchanged (docs/methods.md#pea-kd).

fairseq's encoder loops `for layer in self.layers`; `SharedPassLayers` yields the second pass from
that loop, so fairseq's own forward (masking, `return_all_hiddens`, final LayerNorm) runs it, while
`len()`, indexing and the state dict still see only the physical layers.
"""
import torch.nn as nn
from torch.func import functional_call

REUSE_CHOICES = ("all", "top-half", "bottom-half", "none")
SWAP_CHOICES = ("qk", "none")


def reused_layers(n_layers, reuse):
    """0-based indices of the layers run a second time, in order: all, the top ceil(L/2)
    (Pea-KD's 6-layer student reuses 3,4,5), the bottom ceil(L/2) (its SPS2 variant), or none."""
    half = (n_layers + 1) // 2
    if reuse == "all":
        return list(range(n_layers))
    if reuse == "top-half":
        return list(range(n_layers - half, n_layers))
    if reuse == "bottom-half":
        return list(range(half))
    if reuse == "none":
        return []
    raise ValueError(f"--sps-reuse {reuse!r}: choose one of {', '.join(REUSE_CHOICES)}")


def swapped_qk(layer):
    """The layer's self-attention query and key parameters under each other's names."""
    attn = layer.self_attn
    swap = {}
    for kind in ("weight", "bias"):
        q, k = getattr(attn.q_proj, kind), getattr(attn.k_proj, kind)
        if q is not None and k is not None:
            swap[f"self_attn.q_proj.{kind}"], swap[f"self_attn.k_proj.{kind}"] = k, q
    return swap


class SecondPass:
    """Calls a layer again; with `swap`, its query and key projections exchanged. Not an nn.Module,
    so the shared layer is not registered (or saved) twice."""

    def __init__(self, layer, swap):
        self.layer, self.swap = layer, swap

    def __call__(self, *args, **kwargs):
        if not self.swap:
            return self.layer(*args, **kwargs)
        return functional_call(self.layer, swapped_qk(self.layer), args, kwargs)


class SharedPassLayers(nn.ModuleList):
    """The physical layers, iterated as the layers then the second pass over `reuse` of them."""

    def __init__(self, layers, reuse, swap):
        super().__init__(layers)
        if any(not 0 <= i < len(self) for i in reuse):
            raise ValueError(f"SPS reuses layers {reuse}, but the encoder has {len(self)}")
        self.reuse, self.swap = list(reuse), swap

    def __iter__(self):
        yield from super().__iter__()
        for i in self.reuse:
            yield SecondPass(self[i], self.swap)

    def extra_repr(self):
        return f"second pass over layers {self.reuse}, query/key swapped: {self.swap}"
