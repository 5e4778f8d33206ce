import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from slimtorch.measure import count_macs, count_nonzero, count_parameters, layer_macs, layer_sparsity, measure


def test_macs_of_conv_and_linear_equal_the_formula():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, stride=2), nn.Flatten(), nn.Linear(8 * 16 * 16, 5))
    x = torch.randn(1, 3, 32, 32)
    conv = 8 * 16 * 16 * (3 * 3 * 3)  # out elements × (in_ch × k × k)
    fc = 8 * 16 * 16 * 5
    assert count_macs(model, x) == conv + fc
    per_layer = layer_macs(model, x)
    assert per_layer["0"]["macs"] == conv and per_layer["2"]["macs"] == fc


def test_grouped_conv_macs():
    model = nn.Conv2d(8, 8, 3, padding=1, groups=8)
    x = torch.randn(1, 8, 10, 10)
    assert count_macs(model, x) == 8 * 10 * 10 * 9
    assert layer_macs(nn.Sequential(model), x)["0"]["macs"] == 8 * 10 * 10 * 9


def test_counts_see_masked_zeros():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 20), nn.Linear(20, 4))
    torch_prune.l1_unstructured(model[0], "weight", amount=0.5)
    assert count_parameters(model) == 10 * 20 + 20 + 20 * 4 + 4
    assert count_nonzero(model) == 100 + 20 + 80 + 4
    assert layer_sparsity(model)["0.weight"]["sparsity"] == 0.5
    sparse = layer_macs(model, torch.randn(1, 10))["0"]
    assert sparse["sparse_macs"] == sparse["macs"] // 2


def test_measure_record_has_every_field(tiny_data, user_net):
    _, test = tiny_data
    rec = measure(
        user_net, test[0][0].unsqueeze(0), data=test, reference=user_net, latency_batches=(1, 4), latency_runs=3
    )
    d = rec.to_dict()
    assert 0 <= d["accuracy"] <= 1 and d["agreement"] == 1.0
    assert d["params"] == sum(p.numel() for p in user_net.parameters())
    assert set(d["latency"]) == {"b1", "b4"}
    assert d["latency"]["b1"]["median_ms"] > 0 and d["latency"]["b1"]["p90_ms"] >= d["latency"]["b1"]["median_ms"]
    assert d["dense_bytes"] >= 4 * d["params"] and d["file_bytes"] > 0


def test_environment_records_load_time_commit_and_cpu_flags():
    from slimtorch.measure import environment

    env = environment()
    assert env["generated_at"].endswith("Z") and env["generated_at"] >= env["loadavg"]["process_started_at"]
    assert len(env["loadavg"]["now"]) == 3 and isinstance(env["loaded_machine"], bool)
    assert env["threads"]["torch"] == torch.get_num_threads()
    assert "cpu_flags" in env and env["versions"]["torch"] == torch.__version__
    # run from a checkout: the commit is a 40-hex sha and changed paths are repo-relative
    if env["commit"] is not None:
        assert len(env["commit"]) == 40 and all(p.startswith(("src/", "bench/")) for p in env["uncommitted_changes"])
