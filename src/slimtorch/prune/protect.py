"""Safe defaults for uniform sparsity: small, sensitive layers are pruned less unless the user says otherwise.

One sparsity for every layer is a poor fit for a network whose layers differ
a hundredfold in size. Han et al. 2015 ("Learning both weights and connections
for efficient neural networks", Table 1-2, 4) pruned the first convolution least
(LeNet-5 conv1 34 %, AlexNet conv1 16 %, VGG-16 conv1_1 42 %) and the last
classifier less than the big hidden layers (LeNet-300-100 fc3 74 %, AlexNet fc8
75 %), while hidden layers lost 90 % or more. A first conv of a few hundred
weights pruned to 92 % leaves each filter with one or two weights and the
network near chance (issue 20: 99.05 % -> 17.8 % on an MNIST CNN).

The rule, for ``scope: layer`` unstructured pruning with a magnitude-style
criterion (not ``han``, not N:M), applied to layers *without* a ``per_layer`` value:

* the first convolution of the model (in module order): at most 50 %;
* the last Linear layer (the classifier): at most 75 %;
* any other layer with fewer than ``small_layer_weights`` weights (2048): at most 50 %.

``protect: false`` turns it off; a ``per_layer`` value always wins. The
sensitivity analysis (:mod:`slimtorch.prune.sensitivity`) prunes each layer on
its own and is not capped.
"""

from __future__ import annotations

from torch import nn

FIRST_CONV_MAX = 0.5
LAST_LINEAR_MAX = 0.75
SMALL_MAX = 0.5

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def sensitive_layers(model: nn.Module, small_layer_weights: int) -> dict[str, tuple[float, str]]:
    """fqn -> (maximum sparsity, reason) for every Linear / Conv layer the rule protects."""
    layers = [
        (fqn, m)
        for fqn, m in model.named_modules()
        if isinstance(m, (nn.Linear, *_CONVS)) and getattr(m, "weight", None) is not None
    ]
    out: dict[str, tuple[float, str]] = {}
    for fqn, m in layers:
        n = m.weight.numel()
        if n < small_layer_weights:
            out[fqn] = (SMALL_MAX, f"small layer ({n} weights < {small_layer_weights})")
    convs = [fqn for fqn, m in layers if isinstance(m, _CONVS)]
    if convs:
        out[convs[0]] = (FIRST_CONV_MAX, "first convolution")
    linears = [fqn for fqn, m in layers if isinstance(m, nn.Linear)]
    if linears and linears[-1] == layers[-1][0]:  # a Linear that ends the network: the classifier
        out[linears[-1]] = (LAST_LINEAR_MAX, "last Linear (classifier)")
    return out
