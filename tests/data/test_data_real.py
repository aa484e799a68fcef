"""Real data loaders: the bundled digits, and the downloading loaders against faked sources.

No test touches the network: the scikit-learn fetchers and the torchvision data set
classes are replaced (monkeypatch) by fakes that fail like an offline machine, write
a partial file and fail, or return small arrays shaped like the real data.
"""
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import sklearn.datasets
import torch
import torchvision.datasets
from sklearn.utils import Bunch

from course_utils.data import (DatasetUnavailableError, load_digits_dataset, load_lfw_people, load_mnist,
                               load_olivetti_faces)


def cache_entries(cache_dir: Path) -> list[str]:
    return sorted(path.name for path in cache_dir.iterdir()) if cache_dir.exists() else []


def test_digits_are_real_offline_data_in_the_course_format():
    images, labels = load_digits_dataset()
    assert images.shape == (1797, 1, 8, 8) and images.dtype == torch.float32
    assert labels.dtype == torch.long and sorted(labels.unique().tolist()) == list(range(10))
    assert float(images.min()) == 0.0 and float(images.max()) == 1.0


# ---------------------------------------------------------------- Olivetti


def fake_olivetti(calls, images=None):
    """A stand-in for fetch_olivetti_faces that keeps its 'download' in data_home."""

    def fetch(data_home, download_if_missing):
        calls.append(download_if_missing)
        stored = Path(data_home) / "olivetti.npy"
        if not stored.exists():
            if not download_if_missing:
                raise OSError("Data not found and `download_if_missing` is False")
            pictures = np.random.default_rng(0).random((400, 64, 64), dtype=np.float32) if images is None else images
            np.save(stored, pictures)
        pictures = np.load(stored)
        return Bunch(images=pictures, target=np.repeat(np.arange(40), 10))

    return fetch


def test_olivetti_download_is_checked_cached_and_reused(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(sklearn.datasets, "fetch_olivetti_faces", fake_olivetti(calls))
    images, labels = load_olivetti_faces(cache_dir=tmp_path)
    assert images.shape == (400, 1, 64, 64) and images.dtype == torch.float32
    assert torch.equal(labels, torch.arange(40).repeat_interleave(10)) and labels.dtype == torch.long
    assert cache_entries(tmp_path) == ["olivetti"], "only the finished cache folder remains"
    assert (tmp_path / "olivetti" / "olivetti.npy").exists()
    again, _ = load_olivetti_faces(cache_dir=tmp_path)
    assert calls == [True, False], "the second call reads the cache and never downloads"
    assert torch.equal(again, images)


def test_olivetti_offline_error_names_data_set_cache_and_remedy(tmp_path, monkeypatch):
    def offline(data_home, download_if_missing):
        raise URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(sklearn.datasets, "fetch_olivetti_faces", offline)
    with pytest.raises(DatasetUnavailableError) as error:
        load_olivetti_faces(cache_dir=tmp_path)
    message = str(error.value)
    assert "olivetti" in message and str(tmp_path / "olivetti") in message
    assert "internet" in message and "Name or service not known" in message
    assert cache_entries(tmp_path) == []


def test_a_download_failing_half_way_leaves_nothing_behind(tmp_path, monkeypatch):
    def half_written(data_home, download_if_missing):
        (Path(data_home) / "olivetti.mat.part").write_bytes(b"\x00" * 1000)
        raise ConnectionResetError("connection reset by peer")

    monkeypatch.setattr(sklearn.datasets, "fetch_olivetti_faces", half_written)
    with pytest.raises(DatasetUnavailableError, match="connection reset"):
        load_olivetti_faces(cache_dir=tmp_path)
    assert cache_entries(tmp_path) == []


def test_an_interrupted_download_leaves_nothing_behind(tmp_path, monkeypatch):
    def interrupted(data_home, download_if_missing):
        (Path(data_home) / "olivetti.mat.part").write_bytes(b"\x00" * 10)
        raise KeyboardInterrupt

    monkeypatch.setattr(sklearn.datasets, "fetch_olivetti_faces", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_olivetti_faces(cache_dir=tmp_path)
    assert cache_entries(tmp_path) == []


def test_data_that_fail_their_check_are_not_cached(tmp_path, monkeypatch):
    wrong_size = np.zeros((400, 32, 32), dtype=np.float32)
    monkeypatch.setattr(sklearn.datasets, "fetch_olivetti_faces", fake_olivetti([], images=wrong_size))
    with pytest.raises(DatasetUnavailableError, match=r"shape \(1, 32, 32\) instead of \(1, 64, 64\)"):
        load_olivetti_faces(cache_dir=tmp_path)
    assert cache_entries(tmp_path) == []


def test_an_unreadable_cache_says_to_delete_it(tmp_path, monkeypatch):
    (tmp_path / "olivetti").mkdir()
    monkeypatch.setattr(sklearn.datasets, "fetch_olivetti_faces", fake_olivetti([]))
    with pytest.raises(DatasetUnavailableError, match="Delete that folder"):
        load_olivetti_faces(cache_dir=tmp_path)


@pytest.mark.parametrize(
    "garbage, raised",
    [
        (b"this is not a pickle at all", "IndexError"),
        (b"\0" * 100, "KeyError"),
        (b"", "EOFError"),
        (b"\x80\x04\x95garbage", "error: unpack"),  # struct.error
    ],
)
def test_a_garbage_pickle_in_the_cache_says_to_delete_it(tmp_path, monkeypatch, garbage, raised):
    """scikit-learn's real fetcher unpickles the garbage; what unpickling raises depends on the bytes."""
    (tmp_path / "olivetti").mkdir()
    (tmp_path / "olivetti" / "olivetti_py3.pkz").write_bytes(garbage)

    def no_network(*args, **kwargs):
        raise AssertionError("the test tried to download")

    monkeypatch.setattr(sklearn.datasets._olivetti_faces, "_fetch_remote", no_network)
    with pytest.raises(DatasetUnavailableError) as error:
        load_olivetti_faces(cache_dir=tmp_path)
    message = str(error.value)
    assert f"{tmp_path / 'olivetti'} exists but cannot be read ({raised}" in message
    assert "Delete that folder and load again" in message


def test_a_damaged_cache_fails_its_check(tmp_path, monkeypatch):
    (tmp_path / "olivetti").mkdir()
    np.save(tmp_path / "olivetti" / "olivetti.npy", np.full((400, 64, 64), 2.0, dtype=np.float32))
    monkeypatch.setattr(sklearn.datasets, "fetch_olivetti_faces", fake_olivetti([]))
    with pytest.raises(DatasetUnavailableError, match=r"outside \[0, 1\].*delete that folder"):
        load_olivetti_faces(cache_dir=tmp_path)


# ---------------------------------------------------------------- LFW


def fake_lfw(people, per_person):
    def fetch(data_home, min_faces_per_person, download_if_missing):
        assert min_faces_per_person == 20
        pictures = np.random.default_rng(1).random((people * per_person, 62, 47), dtype=np.float32)
        return Bunch(images=pictures, target=np.repeat(np.arange(people), per_person))

    return fetch


def test_lfw_people_in_the_course_format(tmp_path, monkeypatch):
    monkeypatch.setattr(sklearn.datasets, "fetch_lfw_people", fake_lfw(people=5, per_person=20))
    images, labels = load_lfw_people(cache_dir=tmp_path)
    assert images.shape == (100, 1, 62, 47) and images.dtype == torch.float32
    assert labels.dtype == torch.long and len(labels.unique()) == 5
    assert cache_entries(tmp_path) == ["lfw"]


# ---------------------------------------------------------------- MNIST


def fake_mnist(calls, per_class=6000):
    class FakeSet:
        def __init__(self, root, train, download):
            calls.append((Path(root).name, train, download))
            generator = torch.Generator().manual_seed(0)
            self.data = torch.randint(0, 256, (60000, 28, 28), dtype=torch.uint8, generator=generator)
            self.targets = torch.arange(60000) // per_class

    return FakeSet


def test_mnist_in_the_course_format_cached_and_reused(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(torchvision.datasets, "MNIST", fake_mnist(calls))
    images, labels = load_mnist(cache_dir=tmp_path)
    assert images.shape == (60000, 1, 28, 28) and images.dtype == torch.float32
    assert float(images.max()) <= 1.0 and labels.dtype == torch.long
    assert cache_entries(tmp_path) == ["mnist"]
    load_mnist(cache_dir=tmp_path)
    assert [download for *_, download in calls] == [True, False], "the second call reads the cache"
    assert calls[1] == ("mnist", True, False)


def test_mnist_offline_error(tmp_path, monkeypatch):
    class Offline:
        def __init__(self, root, train, download):
            (Path(root) / "MNIST").mkdir()
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: <urlopen error>")

    monkeypatch.setattr(torchvision.datasets, "MNIST", Offline)
    with pytest.raises(DatasetUnavailableError) as error:
        load_mnist(cache_dir=tmp_path)
    message = str(error.value)
    assert "mnist" in message and str(tmp_path / "mnist") in message and "MNIST/raw" in message
    assert cache_entries(tmp_path) == []


def write_idx(path: Path, array: np.ndarray) -> None:
    """The IDX format of MNIST's files: magic (0, 0, 8 = unsigned byte, dims), sizes, bytes."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_mnist_files_placed_by_hand_are_read_offline_by_torchvision(tmp_path):
    """The real torchvision class, no network: the decompressed files the error message names."""
    raw = tmp_path / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    write_idx(raw / "train-images-idx3-ubyte", rng.integers(0, 256, (60000, 28, 28)))
    write_idx(raw / "train-labels-idx1-ubyte", np.arange(60000) % 10)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / name).touch()  # present, as torchvision requires; only the training split is read
    images, labels = load_mnist(cache_dir=tmp_path)
    assert images.shape == (60000, 1, 28, 28) and float(images.max()) <= 1.0
    assert torch.equal(labels, torch.arange(60000) % 10)


def test_mnist_class_count_is_checked(tmp_path, monkeypatch):
    monkeypatch.setattr(torchvision.datasets, "MNIST", fake_mnist([], per_class=5000))
    with pytest.raises(DatasetUnavailableError, match="classes: 12 instead of 10.*look damaged"):
        load_mnist(cache_dir=tmp_path)
    assert cache_entries(tmp_path) == []
