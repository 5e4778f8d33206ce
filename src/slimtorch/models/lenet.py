"""LeNet-300-100, LeNet-5 (Caffe variant) and plain MLPs for MNIST.

LeNet-300-100 and LeNet-5 follow LeCun et al., 1998, "Gradient-based learning
applied to document recognition", in the variants used by the pruning
literature (Han et al., 2015, "Learning both weights and connections"):
LeNet-300-100 has 266,610 parameters and Caffe's LeNet-5 431,080. The
distillation MLPs (784-1200-1200-10 teacher with dropout, 784-800-800-10
student) are those of Hinton et al., 2015, "Distilling the knowledge in a
neural network". All are ``nn.Sequential`` of standard modules with readable
names (``fc1``, ``conv1``…) so generic transforms can rewrite them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from slimtorch.core.errors import ConfigError
from slimtorch.models.registry import register_model

MNIST_SHAPE = (1, 1, 28, 28)


@register_model("mlp")
def mlp(
    hidden: Sequence[int] = (128,),
    num_classes: int = 10,
    in_features: int = 784,
    dropout: float = 0.0,
    input_dropout: float = 0.0,
) -> nn.Sequential:
    """Fully connected ReLU network on flattened inputs: ``in_features-hidden...-num_classes``.

    Args:
        hidden: widths of the hidden layers; the default is the 784-128-10 seed model.
        num_classes: outputs (logits).
        in_features: flattened input size (784 for 28x28 images).
        dropout: dropout after every hidden ReLU.
        input_dropout: dropout on the input pixels (0.2 in Hinton et al.'s teacher).

    Returns:
        ``nn.Sequential`` named ``flatten, [drop0], fc1, relu1, [drop1], fc2, …``;
        input ``(N, 1, 28, 28)`` (or any shape with ``in_features`` values per sample).
    """
    if any(int(h) < 1 for h in hidden) or not 0.0 <= dropout < 1.0 or not 0.0 <= input_dropout < 1.0:
        raise ConfigError(f"mlp: need positive widths and dropout in [0, 1), got hidden={hidden}, dropout={dropout}")
    layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
    if input_dropout:
        layers["drop0"] = nn.Dropout(input_dropout)
    width = in_features
    for i, h in enumerate(hidden, start=1):
        layers[f"fc{i}"] = nn.Linear(width, int(h))
        layers[f"relu{i}"] = nn.ReLU()
        if dropout:
            layers[f"drop{i}"] = nn.Dropout(dropout)
        width = int(h)
    layers[f"fc{len(hidden) + 1}"] = nn.Linear(width, num_classes)
    model = nn.Sequential(layers)
    model.example_input_shape = MNIST_SHAPE if in_features == 784 else (1, in_features)
    return model


@register_model("mlp_784_128_10")
def mlp_784_128_10() -> nn.Sequential:
    """The seed's MNIST MLP, 784-128-10 (101,770 parameters)."""
    return mlp(hidden=(128,))


@register_model("lenet300_100")
def lenet300_100() -> nn.Sequential:
    """LeNet-300-100: 784-300-100-10 with ReLU (266,610 parameters)."""
    return mlp(hidden=(300, 100))


@register_model("mlp_1200x2")
def mlp_1200x2() -> nn.Sequential:
    """Hinton et al.'s distillation teacher: 784-1200-1200-10, dropout 0.5 (input 0.2)."""
    return mlp(hidden=(1200, 1200), dropout=0.5, input_dropout=0.2)


@register_model("mlp_800x2")
def mlp_800x2() -> nn.Sequential:
    """Hinton et al.'s distillation student: 784-800-800-10, no dropout."""
    return mlp(hidden=(800, 800))


@register_model("lenet5")
def lenet5(num_classes: int = 10, conv_relu: bool = True) -> nn.Sequential:
    """Caffe's LeNet-5: conv(20,k5)-pool-conv(50,k5)-pool-fc500-ReLU-fc10 (431,080 parameters).

    Caffe's ``lenet_train_test.prototxt`` has a ReLU only after ``ip1``. We add
    ReLU after both convolutions by default (``conv_relu=True``): the parameter
    count is unchanged, conv+ReLU fuses for INT8, and in a single-seed check
    (6 epochs SGD, one-cycle) both variants trained below 0.9% MNIST test error
    with the conv-ReLU one marginally ahead. Pass ``conv_relu=False`` for the
    exact Caffe network.

    Input ``(N, 1, 28, 28)``; output ``(N, num_classes)`` logits.
    """
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    layers["conv1"] = nn.Conv2d(1, 20, kernel_size=5)  # 28 -> 24
    if conv_relu:
        layers["relu1"] = nn.ReLU()
    layers["pool1"] = nn.MaxPool2d(2)  # 24 -> 12
    layers["conv2"] = nn.Conv2d(20, 50, kernel_size=5)  # 12 -> 8
    if conv_relu:
        layers["relu2"] = nn.ReLU()
    layers["pool2"] = nn.MaxPool2d(2)  # 8 -> 4: 50*4*4 = 800 features
    layers["flatten"] = nn.Flatten()
    layers["fc1"] = nn.Linear(800, 500)
    layers["relu3"] = nn.ReLU()
    layers["fc2"] = nn.Linear(500, num_classes)
    model = nn.Sequential(layers)
    model.example_input_shape = MNIST_SHAPE
    return model


@register_model("lenet5_slim")
def lenet5_slim(
    conv1: int = 20, conv2: int = 50, fc: int = 500, separable: bool = False, num_classes: int = 10
) -> nn.Sequential:
    """LeNet-5 (Caffe variant with ReLU after the convolutions) of any width.

    With the default widths and ``separable=False`` its parameter names and shapes
    equal ``create_model("lenet5")``'s, so a zoo LeNet-5 state dict loads into it.

    Args:
        conv1, conv2: output channels of the two 5x5 convolutions.
        fc: width of the hidden fully connected layer.
        separable: replace ``conv2`` by depthwise 5x5 (``conv2_dw``) + pointwise 1x1
            (``conv2_pw``). ``conv1`` stays a full convolution: with one input channel a
            depthwise filter would be a single 5x5 kernel shared by every output (MobileNet
            keeps its first convolution full for the same reason).
        num_classes: logits.
    """
    if min(conv1, conv2, fc, num_classes) < 1:
        raise ConfigError(f"lenet5_slim: widths must be >= 1, got conv1={conv1}, conv2={conv2}, fc={fc}")
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    layers["conv1"] = nn.Conv2d(1, conv1, 5)  # 28 -> 24
    layers["relu1"] = nn.ReLU()
    layers["pool1"] = nn.MaxPool2d(2)  # -> 12
    if separable:
        # dw then pw with no nonlinearity in between: an exact low-rank factorisation of the
        # full conv's weight space, so the only loss is capacity, not a changed function class
        layers["conv2_dw"] = nn.Conv2d(conv1, conv1, 5, groups=conv1)  # 12 -> 8
        layers["conv2_pw"] = nn.Conv2d(conv1, conv2, 1)
    else:
        layers["conv2"] = nn.Conv2d(conv1, conv2, 5)  # 12 -> 8
    layers["relu2"] = nn.ReLU()
    layers["pool2"] = nn.MaxPool2d(2)  # -> 4
    layers["flatten"] = nn.Flatten()
    layers["fc1"] = nn.Linear(conv2 * 16, fc)
    layers["relu3"] = nn.ReLU()
    layers["fc2"] = nn.Linear(fc, num_classes)
    model = nn.Sequential(layers)
    model.example_input_shape = (1, 1, 28, 28)
    return model
