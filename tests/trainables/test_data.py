import pickle

import numpy as np
import pytest
import torch

from tunelab.trainables.batches import Augment, iterate_batches, random_crop, random_flip
from tunelab.trainables.cifar import read_cifar_batch
from tunelab.trainables.configs import DataOptions
from tunelab.trainables.data import load_dataset
from tunelab.trainables.splits import ArraySplit, channel_stats, resize_uint8, stratified_split
from tunelab.core.errors import DataError
from tests.conftest import write_image_folder


def _rows(images: torch.Tensor) -> set[bytes]:
    return {bytes(img.numpy().tobytes()) for img in images}


def test_cifar_batch_round_trips_pixels_and_labels(cifar10_dir):
    root, written = cifar10_dir
    images, labels = read_cifar_batch(root / "cifar-10-batches-py" / "data_batch_3")
    data, expected_labels = written["data_batch_3"]
    assert images.shape == (20, 3, 32, 32)
    # The original layout: 1024 red, then 1024 green, then 1024 blue values, row-major.
    assert np.array_equal(images.reshape(20, -1), data)
    assert images[4, 1, 2, 5] == data[4, 1024 + 2 * 32 + 5]
    assert np.array_equal(labels, expected_labels)


def test_cifar10_dataset_uses_official_test_batch_and_carves_val_from_train(cifar10_dir):
    root, written = cifar10_dir
    bundle = load_dataset(DataOptions(dataset="cifar10", data_dir=str(root), val_fraction=0.2))
    assert bundle.class_names[0] == "airplane" and bundle.num_classes == 10
    assert len(bundle.train) + len(bundle.val) == 100
    assert len(bundle.val) == 20  # 2 of each of the 10 classes
    assert np.array_equal(bundle.test.images.reshape(20, -1).numpy(), written["test_batch"][0])
    assert not _rows(bundle.train.images) & _rows(bundle.val.images)
    assert not _rows(bundle.test.images) & (_rows(bundle.train.images) | _rows(bundle.val.images))
    assert torch.bincount(bundle.val.labels, minlength=10).tolist() == [2] * 10


def test_cifar_missing_folder_names_the_path(tmp_path, monkeypatch):
    monkeypatch.setattr("tunelab.trainables.cifar._online", lambda url, timeout=3.0: False)
    with pytest.raises(DataError, match="/nonexistent"):
        load_dataset(DataOptions(dataset="cifar10", data_dir="/nonexistent"))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "missing_key"])
def test_corrupted_cifar_batch_is_a_data_error(cifar10_dir, damage):
    root, _ = cifar10_dir
    path = root / "cifar-10-batches-py" / "data_batch_1"
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a pickle at all")
    else:
        path.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}, protocol=2))
    with pytest.raises(DataError, match="data_batch_1.*corrupted"):
        load_dataset(DataOptions(dataset="cifar10", data_dir=str(root)))


def test_cifar_batch_with_code_in_it_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": Evil(), b"labels": [0]}, protocol=2))
    with pytest.raises(DataError, match="corrupted"):
        read_cifar_batch(path)


def test_digits_splits_are_disjoint_stratified_and_complete():
    bundle = load_dataset(DataOptions(dataset="digits", image_size=8))
    sizes = len(bundle.train), len(bundle.val), len(bundle.test)
    assert sum(sizes) == 1797
    assert bundle.test.images.shape[1:] == (3, 8, 8) and bundle.train.images.dtype == torch.uint8
    assert abs(len(bundle.test) / 1797 - 0.2) < 0.01
    assert abs(len(bundle.val) / (1797 - len(bundle.test)) - 0.1) < 0.01
    # Stratified: each class's share in val is within one image of its share in train.
    train_counts = torch.bincount(bundle.train.labels, minlength=10).double()
    val_counts = torch.bincount(bundle.val.labels, minlength=10).double()
    expected = train_counts / train_counts.sum() * len(bundle.val)
    assert torch.all((val_counts - expected).abs() <= 1.0)


def test_split_is_fixed_by_split_seed_not_by_chance():
    a = load_dataset(DataOptions(dataset="digits", image_size=8))
    b = load_dataset(DataOptions(dataset="digits", image_size=8))
    c = load_dataset(DataOptions(dataset="digits", image_size=8, split_seed=1))
    assert torch.equal(a.val.images, b.val.images)
    assert torch.equal(a.test.images, c.test.images)  # test never moves
    assert not torch.equal(a.val.labels, c.val.labels) or not torch.equal(a.val.images, c.val.images)


def test_stratified_split_indices_partition_the_data():
    labels = np.repeat(np.arange(4), [10, 20, 30, 40])
    keep, held = stratified_split(labels, 0.1, seed=3)
    assert sorted(np.concatenate([keep, held]).tolist()) == list(range(100))
    assert np.bincount(labels[held]).tolist() == [1, 2, 3, 4]


def test_image_folder_loads_with_carved_test(tmp_path):
    write_image_folder(tmp_path / "cars", {"audi": 10, "bmw": 10, "fiat": 10})
    bundle = load_dataset(DataOptions(dataset=f"imagefolder:{tmp_path / 'cars'}", image_size=8))
    assert bundle.class_names == ["audi", "bmw", "fiat"]
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == 30
    assert bundle.train.images.shape[1:] == (3, 8, 8)


def test_image_folder_with_train_and_test_subfolders(tmp_path):
    write_image_folder(tmp_path / "set" / "train", {"a": 10, "b": 10})
    write_image_folder(tmp_path / "set" / "test", {"a": 3, "b": 4})
    bundle = load_dataset(DataOptions(dataset=f"imagefolder:{tmp_path / 'set'}", image_size=8, resize="stretch"))
    assert len(bundle.test) == 7 and len(bundle.train) + len(bundle.val) == 20


def test_image_folder_too_large_for_memory_is_streamed(tmp_path):
    from tunelab.trainables.splits import FolderSplit

    write_image_folder(tmp_path / "big", {"a": 6, "b": 6})
    bundle = load_dataset(DataOptions(dataset=f"imagefolder:{tmp_path / 'big'}", image_size=8, max_memory_mb=0))
    assert isinstance(bundle.train, FolderSplit)
    batches = list(iterate_batches(bundle.train, 4, device=torch.device("cpu"), shuffle=True,
                                   generator=torch.Generator().manual_seed(0)))
    assert sum(len(y) for _, y in batches) == len(bundle.train)
    assert batches[0][0].dtype == torch.uint8 and batches[0][0].shape[1:] == (3, 8, 8)


@pytest.mark.parametrize("layout,message", [({}, "no images"), ({"only": 5}, "at least 2 class")])
def test_unusable_image_folder_is_a_data_error(tmp_path, layout, message):
    (tmp_path / "f").mkdir()
    write_image_folder(tmp_path / "f", layout)
    with pytest.raises(DataError, match=message):
        load_dataset(DataOptions(dataset=f"imagefolder:{tmp_path / 'f'}"))


def test_random_crop_matches_a_per_image_crop_of_the_padded_image():
    images = torch.randint(0, 256, (6, 3, 5, 7), dtype=torch.uint8)
    gen = torch.Generator().manual_seed(0)
    out = random_crop(images, 2, gen)
    replay = torch.Generator().manual_seed(0)
    dy = torch.randint(0, 5, (6,), generator=replay)
    dx = torch.randint(0, 5, (6,), generator=replay)
    for i in range(6):
        padded = np.zeros((3, 9, 11), np.uint8)
        padded[:, 2:7, 2:9] = images[i].numpy()
        expected = padded[:, dy[i]:dy[i] + 5, dx[i]:dx[i] + 7]
        assert np.array_equal(out[i].numpy(), expected)


def test_random_flip_flips_exactly_the_chosen_images():
    images = torch.arange(4 * 1 * 2 * 3, dtype=torch.uint8).reshape(4, 1, 2, 3)
    out = random_flip(images, 3, torch.Generator().manual_seed(5))
    chosen = torch.rand(4, generator=torch.Generator().manual_seed(5)) < 0.5
    for i in range(4):
        assert torch.equal(out[i], images[i].flip(2) if chosen[i] else images[i])


def test_shuffled_batches_cover_the_split_once():
    split = ArraySplit(torch.zeros(10, 3, 2, 2, dtype=torch.uint8), torch.arange(10))
    seen = torch.cat([y for _, y in iterate_batches(split, 3, device=torch.device("cpu"), shuffle=True,
                                                   generator=torch.Generator().manual_seed(0))])
    assert sorted(seen.tolist()) == list(range(10))
    augment = Augment(crop_padding=1, hflip=True, vflip=True)
    assert augment(split.images, torch.Generator().manual_seed(0)).shape == split.images.shape


def test_channel_stats_chunked_equal_a_float64_computation(monkeypatch):
    import tunelab.trainables.splits as data

    monkeypatch.setattr(data, "CHUNK", 7)  # several chunks, the last one short
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (30, 3, 5, 4), dtype=np.uint8))
    x = images.numpy().astype(np.float64) / 255.0
    mean, std = channel_stats(images)
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, x.std(axis=(0, 2, 3), ddof=1), rtol=1e-10)


def test_resize_in_chunks_equals_one_interpolation(monkeypatch):
    import torch.nn.functional as F

    import tunelab.trainables.splits as data

    monkeypatch.setattr(data, "CHUNK", 4)
    images = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (10, 3, 12, 12), dtype=np.uint8))
    whole = F.interpolate(images.float(), size=(8, 8), mode="bilinear", antialias=True, align_corners=False)
    assert torch.equal(resize_uint8(images, 8), whole.round().clamp(0, 255).to(torch.uint8))
    assert resize_uint8(images, 12) is images


def test_stats_sample_takes_an_equal_seeded_share_of_every_class():
    from tunelab.trainables.image_folders import stats_sample

    labels = np.repeat([0, 1, 2, 3], [1000, 1000, 10, 1000])
    pick = stats_sample(labels, 512, seed=0)
    assert len(pick) <= 512 and len(set(pick)) == len(pick)
    counts = np.bincount(labels[pick], minlength=4)
    assert counts[2] == 10 and all(120 <= c <= 128 for c in counts[[0, 1, 3]])
    assert np.array_equal(pick, stats_sample(labels, 512, seed=0))
    assert not np.array_equal(pick, stats_sample(labels, 512, seed=1))


def test_streamed_folder_statistics_come_from_every_class(tmp_path):
    # Two classes, black then white images: paths sorted by class put 600 black ones first, so the
    # first 512 alone would give a mean of 0.
    from PIL import Image

    for cls, value in (("a_black", 0), ("b_white", 255)):
        (tmp_path / "tone" / cls).mkdir(parents=True)
        image = Image.fromarray(np.full((4, 4, 3), value, dtype=np.uint8))
        for i in range(600):
            image.save(tmp_path / "tone" / cls / f"{i}.png")
    bundle = load_dataset(DataOptions(dataset=f"imagefolder:{tmp_path / 'tone'}", image_size=4, max_memory_mb=0))
    assert all(0.4 < m < 0.6 for m in bundle.mean), bundle.mean
