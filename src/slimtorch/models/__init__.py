"""Model zoo (LeNets, MLPs, MobileNetV2, CIFAR ResNets, SmolLM2-135M) and the model registry."""

# importing the zoo modules registers their builders
from slimtorch.models import lenet, llm, minilm, mobilenetv2, resnet_cifar  # noqa: F401
from slimtorch.models.lenet import lenet5, lenet300_100, mlp, mlp_784_128_10, mlp_800x2, mlp_1200x2
from slimtorch.models.mobilenetv2 import MobileNetV2, imagenet_preprocess, mobilenet_v2, pretrained_weights_path
from slimtorch.models.registry import MODELS, create_model, list_models, register_model
from slimtorch.models.resnet_cifar import ResNetCifar, resnet20, resnet56

__all__ = [
    "MODELS",
    "MobileNetV2",
    "ResNetCifar",
    "create_model",
    "imagenet_preprocess",
    "lenet300_100",
    "lenet5",
    "list_models",
    "mlp",
    "mlp_1200x2",
    "mlp_784_128_10",
    "mlp_800x2",
    "mobilenet_v2",
    "pretrained_weights_path",
    "register_model",
    "resnet20",
    "resnet56",
]
