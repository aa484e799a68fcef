"""Safetensors weights with a checksummed sidecar: round trip, refusals, and the shipped network."""
import json
import operator
import shutil

import pytest
import torch

from course_utils.data import make_synthetic_faces
from course_utils.evaluation.retrieval import embed, one_shot_identification
from course_utils.training.models import EmbeddingNet
from course_utils.training.pretrained import (
    DEFAULT_WEIGHTS,
    PretrainedError,
    load_pretrained,
    load_torch_checkpoint,
    save_weights,
)


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = EmbeddingNet(in_channels=1, embedding_dim=8, width=4)
    path = tmp_path / "tiny.safetensors"
    save_weights(model, path, {"command": "made by a test", "metrics": {"map_at_r": 0.5}})
    return model, path


def test_round_trip_gives_equal_weights_and_outputs(saved):
    model, path = saved
    loaded, info = load_pretrained(path)
    assert info["metadata"]["command"] == "made by a test"
    assert info["model"] == {"in_channels": 1, "embedding_dim": 8, "normalize": True, "backbone": "small", "width": 4}
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    pictures = torch.rand(5, 1, 8, 8)
    assert torch.equal(embed(loaded, pictures), embed(model, pictures))
    assert not loaded.training


def test_a_flipped_byte_is_refused(saved):
    _, path = saved
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0xFF
    path.write_bytes(bytes(content))
    with pytest.raises(PretrainedError, match=f"{path.name} has sha256 .* the file was modified"):
        load_pretrained(path)


def test_a_truncated_file_is_refused(saved):
    _, path = saved
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(PretrainedError, match=f"{path.name} has sha256 .* modified, truncated or corrupted"):
        load_pretrained(path)


def test_a_missing_sidecar_is_refused(saved):
    _, path = saved
    path.with_suffix(".json").unlink()
    with pytest.raises(PretrainedError, match="tiny.json is missing or is not a course_utils weights sidecar"):
        load_pretrained(path)
    path.with_suffix(".json").write_text("{not json")
    with pytest.raises(PretrainedError, match="tiny.json is missing or is not"):
        load_pretrained(path)


def test_a_mismatched_architecture_is_refused(saved):
    _, path = saved
    info = json.loads(path.with_suffix(".json").read_text())
    info["model"]["width"] = 8
    path.with_suffix(".json").write_text(json.dumps(info))
    with pytest.raises(PretrainedError, match="does not match the architecture recorded in tiny.json"):
        load_pretrained(path)


def test_a_missing_weights_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        load_pretrained(tmp_path / "nothing.safetensors")


def test_torch_files_load_weights_only_and_pickled_code_is_refused(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save({"weight": torch.arange(3.0)}, plain)
    assert torch.equal(load_torch_checkpoint(plain)["weight"], torch.arange(3.0))
    pickled = tmp_path / "pickled.pt"
    torch.save({"weight": torch.arange(3.0), "hook": operator.add}, pickled)  # a function: code, not data
    with pytest.raises(PretrainedError, match="pickled.pt holds pickled Python objects that weights_only"):
        load_torch_checkpoint(pickled)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(plain.read_bytes()[:50])
    with pytest.raises(PretrainedError, match="truncated.pt cannot be read"):
        load_torch_checkpoint(truncated)


def test_shipped_weights_verify_and_a_tampered_copy_is_refused(tmp_path):
    model, info = load_pretrained()
    assert info["metadata"]["command"].startswith("OMP_NUM_THREADS=1 python -m course_utils.training.cli")
    assert DEFAULT_WEIGHTS.stat().st_size < 1_000_000
    copy = tmp_path / DEFAULT_WEIGHTS.name
    shutil.copy(DEFAULT_WEIGHTS, copy)
    shutil.copy(DEFAULT_WEIGHTS.with_suffix(".json"), copy.with_suffix(".json"))
    content = bytearray(copy.read_bytes())
    content[-1] ^= 0x01
    copy.write_bytes(bytes(content))
    with pytest.raises(PretrainedError, match="sha256"):
        load_pretrained(copy)


def test_shipped_network_beats_pixels_on_new_identities():
    model, _ = load_pretrained()
    # Identities the network never saw: a different seed draws different people.
    images, labels = make_synthetic_faces(n_identities=50, images_per_identity=5, seed=7)
    trained = one_shot_identification(embed(model, images), labels).accuracy
    pixels = one_shot_identification(images.flatten(1), labels).accuracy
    assert trained > pixels + 0.4, (trained, pixels)  # measured: 0.965 against 0.245
    assert trained > 0.85
