"""`definet average`: the weight average of checkpoints of one network, scored on val against its members."""

import json
from dataclasses import replace

import pytest
import torch

from definet_core.architectures import build_model
from definet_core.averaging import average_payload
from definet_core.checkpoint import load_model, read_checkpoint, save_checkpoint
from definet_core.errors import DefiNetInputError
from tests.conftest import TINY_CONFIG
from workflows.cli.main import main


def sibling(path, seed: int, config=TINY_CONFIG):
    """A tiny checkpoint with its own random weights."""
    torch.manual_seed(seed)
    save_checkpoint(path, build_model(config), [16, 34, 42], {"epoch": seed, "val_ratio": {"MoS2": 0.5 + seed}})
    return path


def test_the_average_holds_the_mean_of_the_weights_and_each_members_scores(tmp_path):
    a, b = sibling(tmp_path / "a.pt", 1), sibling(tmp_path / "b.pt", 2)
    payload = average_payload([a, b], ["a@1", "b@2"])
    first, second = read_checkpoint(a)["state_dict"], read_checkpoint(b)["state_dict"]
    for name, tensor in payload["state_dict"].items():
        assert torch.allclose(tensor, (first[name] + second[name]) / 2)
    assert not torch.equal(first["layers.0.filter.weight"], second["layers.0.filter.weight"])
    assert [m["checkpoint"] for m in payload["metadata"]["average_of"]] == ["a@1", "b@2"]
    assert payload["metadata"]["average_of"][1]["val_ratio"] == {"MoS2": 2.5}
    older = read_checkpoint(b)
    del older["config"]["gaussian_reach"]  # written before the field existed: read with its default
    torch.save(older, tmp_path / "older.pt")
    assert average_payload([a, tmp_path / "older.pt"], ["a", "older"])["state_dict"].keys() == first.keys()
    same = average_payload([a, a], ["a", "a"])["state_dict"]
    assert all(torch.equal(same[name], first[name]) for name in first)


def test_checkpoints_of_different_networks_are_refused_in_one_line(tmp_path):
    a = sibling(tmp_path / "a.pt", 1)
    wider = sibling(tmp_path / "wide.pt", 2, replace(TINY_CONFIG, hidden=24))
    with pytest.raises(DefiNetInputError, match=r"wide\.pt: its config differs from .*a\.pt's") as error:
        average_payload([a, wider], ["a", "wide"])
    assert "\n" not in str(error.value)
    with pytest.raises(DefiNetInputError, match="averaging needs two or more"):
        average_payload([a], ["a"])


def test_average_command_writes_a_loadable_checkpoint_scored_on_val(tmp_path, dataset_root, cache_dir, capsys):
    a, b = sibling(tmp_path / "a.pt", 1), sibling(tmp_path / "b.pt", 2)
    out = tmp_path / "soup.pt"
    assert main(["average", str(a), str(b), "--data", str(dataset_root), "-o", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [spec.split("@")[0] for spec in summary["average_of"]] == ["a", "b"]
    model, payload = load_model(out)
    assert set(payload["metadata"]["val_ratio"]) == {"MoS2"} and payload["metadata"]["val_ratio"]["MoS2"] > 0
    assert payload["metadata"]["val_mae"]["MoS2"] > 0 and payload["trained_elements"] == [16, 34, 42]
    assert model.config == TINY_CONFIG
    assert main(["average", str(a), "-o", str(out)]) == 2  # a one-line error, nothing written over
    assert read_checkpoint(out)["metadata"]["val_ratio"] == payload["metadata"]["val_ratio"]
