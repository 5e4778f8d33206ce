"""DistillConfig: validation naming the field, dict round trip."""

import pytest

from slimtorch.core import ConfigError
from slimtorch.distill import DistillConfig, FeaturePair
from slimtorch.train import TrainConfig


def test_default_is_hinton_kl():
    cfg = DistillConfig()
    assert cfg.loss == "kl" and cfg.temperature > 0 and 0 <= cfg.alpha <= 1


def test_round_trips_through_a_plain_dict():
    cfg = DistillConfig(
        loss="mse",
        temperature=2.0,
        alpha=0.5,
        features=(FeaturePair(student="a", teacher="b", weight=0.1),),
        train=TrainConfig(epochs=3),
    )
    assert DistillConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "data, field",
    [
        ({"temperature": 0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"alpha": 1.5}, "alpha"),
        ({"alpha": -0.1}, "alpha"),
        ({"loss": "cosine"}, "loss"),
        ({"tempreature": 2}, "tempreature"),
        ({"features": [{"student": "", "teacher": "x"}]}, "features[0].student"),
    ],
)
def test_bad_values_raise_config_error_naming_the_field(data, field):
    with pytest.raises(ConfigError) as exc:
        DistillConfig.from_dict(data)
    assert field in str(exc.value)


def test_cache_with_jitter_is_rejected_clearly():
    with pytest.raises(ConfigError, match="jitter"):
        DistillConfig.from_dict({"cache_teacher": True, "train": {"jitter": 2}})
