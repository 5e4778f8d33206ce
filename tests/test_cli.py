import json

from slimtorch.cli import main


def test_validate_reports_ok(capsys):
    assert main(["validate", "recipes/lenet300_mnist.yaml"]) == 0
    assert "OK" in capsys.readouterr().out


def test_bad_override_is_one_clear_line_and_status_2(capsys):
    assert main(["validate", "recipes/lenet300_mnist.yaml", "stages.0.epochs=-3"]) == 2
    err = capsys.readouterr().err
    assert "stages[0].epochs" in err and "Traceback" not in err


def test_train_eval_measure_on_synthetic_data(tmp_path, capsys):
    model = tmp_path / "m.safetensors"
    assert main(["train", "lenet300_100", "-o", str(model), "--data", "synthetic", "--epochs", "1"]) == 0
    assert model.exists()
    assert main(["train", "lenet300_100", "-o", str(model), "--data", "synthetic", "--epochs", "1"]) == 2
    capsys.readouterr()
    assert main(["eval", str(model), "--data", "synthetic"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 <= out["accuracy"] <= 1 and out["n"] == 128
    assert main(["measure", str(model), "--data", "synthetic", "--json", str(tmp_path / "m.json")]) == 0
    rec = json.loads((tmp_path / "m.json").read_text())
    assert rec["params"] == 266610 and rec["artifact_bytes"] == model.stat().st_size


def test_missing_model_file_is_a_clear_error(capsys):
    assert main(["eval", "no/such/model.safetensors", "--data", "synthetic"]) == 2
    err = capsys.readouterr().err
    assert "no/such/model.safetensors" in err and "does not exist" in err
