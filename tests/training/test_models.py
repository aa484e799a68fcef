"""EmbeddingNet: shapes, unit-length encodings, any picture size, clear errors."""
import pytest
import torch

from course_utils.training.models import EmbeddingNet


@pytest.mark.parametrize("size", [8, 16, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_small_network_accepts_course_picture_sizes(size, channels):
    torch.manual_seed(0)
    model = EmbeddingNet(in_channels=channels, embedding_dim=24, width=4).eval()
    encodings = model(torch.rand(5, channels, size, size))
    assert encodings.shape == (5, 24)
    assert encodings.dtype == torch.float32
    torch.testing.assert_close(encodings.norm(dim=1), torch.ones(5))


def test_without_normalisation_lengths_are_free():
    torch.manual_seed(0)
    model = EmbeddingNet(embedding_dim=8, normalize=False, width=4).eval()
    lengths = model(torch.rand(6, 3, 16, 16)).norm(dim=1)
    assert not torch.allclose(lengths, torch.ones(6))


def test_output_is_float32_under_bfloat16_autocast():
    torch.manual_seed(0)
    model = EmbeddingNet(embedding_dim=8, width=4).eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        encodings = model(torch.rand(3, 3, 16, 16))
    assert encodings.dtype == torch.float32
    torch.testing.assert_close(encodings.norm(dim=1), torch.ones(3))


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = EmbeddingNet(embedding_dim=8, width=4)
    model(torch.rand(4, 3, 16, 16))[:, 0].sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_repr_names_the_settings():
    text = repr(EmbeddingNet(in_channels=1, embedding_dim=32, width=4))
    assert "in_channels=1, embedding_dim=32, normalize=True, backbone='small'" in text
    assert "Conv2d(1, 4" in text


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"embedding_dim": 0}, ValueError, "embedding_dim must be a whole number >= 1"),
        ({"in_channels": 2.5}, TypeError, r"in_channels must be a whole number \(an int\), got float 2.5"),
        ({"backbone": "vgg"}, ValueError, "unknown backbone 'vgg'"),
    ],
)
def test_bad_settings_are_refused(kwargs, error, message):
    with pytest.raises(error, match=message):
        EmbeddingNet(**kwargs)


def test_wrong_picture_shape_says_what_to_do():
    model = EmbeddingNet(in_channels=3, width=4)
    with pytest.raises(ValueError, match=r"unsqueeze\(0\)"):
        model(torch.rand(3, 16, 16))
    with pytest.raises(ValueError, match="in_channels=1"):
        model(torch.rand(2, 1, 16, 16))
    with pytest.raises(TypeError, match="torch.Tensor"):
        model([[0.0]])
