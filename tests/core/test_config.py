import pytest
from pydantic import Field, ValidationError

from slimtorch.core import ConfigError, FrozenConfig, Registry


class Cfg(FrozenConfig):
    bits: int = Field(8, ge=2, le=8)
    mode: str = "sym"


def test_round_trip_through_dict():
    cfg = Cfg(bits=4)
    assert Cfg.from_dict(cfg.to_dict()) == cfg


def test_unknown_field_is_named_with_allowed_fields():
    with pytest.raises(ConfigError) as exc:
        Cfg.from_dict({"bitz": 4}, where="stages[1]")
    assert exc.value.field == "stages[1].bitz"
    assert "bits" in str(exc.value) and "mode" in str(exc.value)


def test_out_of_range_value_names_field_and_value():
    with pytest.raises(ConfigError) as exc:
        Cfg.from_dict({"bits": 1})
    assert exc.value.field == "bits"
    assert "1" in str(exc.value)


def test_configs_are_frozen():
    cfg = Cfg()
    with pytest.raises(ValidationError, match="frozen"):
        cfg.bits = 3  # type: ignore[misc]
    assert cfg.replace(bits=3).bits == 3


def test_registry_duplicate_raises_and_unknown_lists_names():
    reg: Registry[int] = Registry("thing")
    reg.register("a", 1)
    with pytest.raises(ValueError):
        reg.register("a", 2)
    with pytest.raises(ConfigError, match="available: a"):
        reg.get("b")


class _Inner(FrozenConfig):
    lr: float = 0.1
    momentum: float = 0.9


class _Outer(FrozenConfig):
    epochs: int = 1
    optimizer: _Inner = _Inner()
    groups: tuple[_Inner, ...] = ()


@pytest.mark.parametrize(
    "data, path, fields",
    [
        ({"optimizer": {"mom": 0.5}}, "train.optimizer.mom", "lr, momentum"),
        ({"groups": [{"lr": 1.0}, {"x": 1}]}, "train.groups[1].x", "lr, momentum"),
        ({"epoch": 2}, "train.epoch", "epochs, groups, optimizer"),
    ],
)
def test_unknown_nested_field_lists_the_fields_of_its_own_level(data, path, fields):
    with pytest.raises(ConfigError) as info:
        _Outer.from_dict(data, "train")
    assert info.value.field == path
    assert str(info.value).endswith(f"allowed fields here: {fields}")
