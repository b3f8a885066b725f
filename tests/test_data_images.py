"""Images as one-frame clips: CIFAR-10 (torchvision), image folders, archives, the Keras preset."""

import hashlib
import pickle
import tarfile

import numpy as np
import pytest
import torch
from torchvision.datasets import CIFAR10

from vivit_tl.data import DataConfig, build_dataset, dataset_root, prepare_dataset, read_video_views

from video_utils import make_image_folder

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_tiny_cifar(root, monkeypatch, per_batch=6, test_size=5):
    """A CIFAR-10 python-format folder with few images; torchvision's checksums point at these files."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    files = {}
    for name, n in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", test_size)]:
        entry = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": rng.integers(0, 10, n).tolist()}
        files[name] = entry
        (folder / name).write_bytes(pickle.dumps(entry))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": CIFAR_CLASSES}))
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{i}", md5[f"data_batch_{i}"]] for i in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names", "md5": md5["batches.meta"]})
    return files


def test_cifar10_python_format_loads_as_one_frame_clips(tmp_path, monkeypatch):
    files = write_tiny_cifar(tmp_path, monkeypatch)
    cfg = DataConfig.from_preset("keras_cifar", kind="cifar10", root=str(tmp_path), val_size=10)
    prepare_dataset(cfg)
    train, val = build_dataset(cfg, "train", train=True), build_dataset(cfg, "val", train=False)
    test = build_dataset(cfg, "test", train=False)
    assert (len(train), len(val), len(test)) == (20, 10, 5)  # 30 train images: 20 / 10 carved by split_seed
    assert train.classes == CIFAR_CLASSES
    assert not set(train.video_names) & set(val.video_names)
    assert sorted(train.video_names + val.video_names) == [f"train/{i:05d}" for i in range(30)]
    assert build_dataset(cfg, "val", train=False).video_names == val.video_names  # stable by seed
    clip, label, index = train[3]
    assert clip.shape == (3, 1, 48, 48) and 0 <= clip.min() and clip.max() <= 1  # Keras: [0, 1], no mean/std
    # Evaluation (Keras): the whole 32x32 image resized to 48x48, no crop, no flip.
    clip, label, index = test[2]
    image = files["test_batch"]["data"][2].reshape(3, 32, 32)
    expected = torch.nn.functional.interpolate(torch.tensor(image[None], dtype=torch.float32) / 255, size=48,
                                               mode="bilinear", antialias=True, align_corners=False)[0]
    assert label == files["test_batch"]["labels"][2] and index == 2
    assert (clip[:, 0] - expected).abs().max() < 0.01
    keras = build_dataset(DataConfig.from_dict({**cfg.to_dict(), "split_seed": None}), "val", train=False)
    assert keras.video_names == [f"train/{i:05d}" for i in range(20, 30)]  # Keras: x_train[40000:]
    with pytest.raises(ValueError, match="split_seed=None.*only for kind 'cifar10'"):
        DataConfig.from_preset("keras_cifar", kind="image_folder", split_seed=None)
    with pytest.raises(ValueError, match="CIFAR-10 split 'valid'"):
        build_dataset(cfg, "valid", train=False)
    with pytest.raises(FileNotFoundError, match="set download: true"):
        prepare_dataset(DataConfig(kind="cifar10", num_frames=1, root=str(tmp_path / "empty")))


def test_keras_preset_training_augmentation():
    cfg = DataConfig.from_preset("keras_cifar", kind="image_folder", root="unused")
    assert (cfg.short_side, cfg.image_size, cfg.hflip, cfg.mean, cfg.num_views) == (52, 48, True, None, 1)
    from vivit_tl.data.transforms import as_video, train_transform

    image = torch.arange(32 * 32 * 3, dtype=torch.int64).remainder(251).to(torch.uint8).reshape(1, 32, 32, 3)
    outs = [train_transform(cfg)(as_video(image)) for _ in range(20)]
    assert all(o.shape == (1, 3, 48, 48) for o in outs)
    assert len({o.numpy().tobytes() for o in outs}) > 5  # random crops and flips


def test_keras_eval_resize_is_two_bilinear_steps_without_antialiasing():
    """eval_resize='keras': Resizing(short_side) then RandomCrop's inference resize to image_size, TF's bilinear
    (half-pixel centres, no antialiasing). Columns 0 | 200: 2 -> 4 px gives 0 50 150 200, 4 -> 2 px 25 175."""
    from vivit_tl.data.transforms import eval_crop, eval_resize

    video = torch.tensor([0, 200], dtype=torch.uint8).expand(1, 3, 2, 2)  # [F, 3, H, W]
    cfg = DataConfig.from_preset("keras_cifar", kind="image_folder", short_side=4, image_size=2, eval_resize="keras")
    out = eval_crop(eval_resize(video, cfg), cfg, 0)
    assert out.dtype == torch.uint8 and out.shape == (1, 3, 2, 2) and cfg.num_views == 1
    assert out[0, 0].tolist() == [[25, 175], [25, 175]]
    full = DataConfig.from_dict({**cfg.to_dict(), "eval_resize": "full"})
    assert eval_resize(video, full)[0, 0].tolist() == [[0, 200], [0, 200]]  # one step: 2 -> 2 px is the identity


def test_batch_crop_cuts_one_window_per_batch_and_flips_per_clip():
    from vivit_tl.data.transforms import crop_batch

    coords = torch.arange(52 * 52, dtype=torch.float32).reshape(52, 52)  # pixel value = 52 * y + x
    clips = (coords + 10000 * torch.arange(8).view(8, 1, 1, 1, 1)).expand(8, 3, 1, 52, 52)  # clip b: + 10000 b
    windows, flips = set(), set()
    for seed in range(200):
        out = crop_batch(clips, 48, hflip=True, generator=torch.Generator().manual_seed(seed))
        assert out.shape == (8, 3, 1, 48, 48) and out.is_contiguous()
        own = out - 10000 * torch.arange(8).view(8, 1, 1, 1, 1)  # every clip's crop in the shared coordinates
        flipped = own[..., 0, 0] > own[..., 0, -1]  # [8, 3, 1]
        unflipped = torch.where(flipped.view(8, 3, 1, 1, 1).expand_as(own), own.flip(-1), own)
        assert (unflipped == unflipped[0]).all()  # one window for the whole batch
        top, left = divmod(int(unflipped[0, 0, 0, 0, 0]), 52)
        assert torch.equal(unflipped[0, 0, 0], coords[top:top + 48, left:left + 48])
        windows.add((top, left))
        flips.add(tuple(flipped[:, 0, 0].tolist()))
    assert windows == {(t, l) for t in range(5) for l in range(5)}  # uniform over the 5 x 5 offsets
    assert len(flips) > 100  # flips drawn per clip, not per batch
    plain = crop_batch(clips, 48, hflip=False, generator=torch.Generator().manual_seed(0))
    assert (plain[..., 0, 0] % 10000 < plain[..., 0, -1] % 10000).all()  # hflip=False: nothing mirrored


def test_batch_crop_loader_is_seeded_by_the_batch_not_the_worker(tmp_path):
    from vivit_tl.engine.loader import build_train_loader

    make_image_folder(tmp_path, per_class=4)
    cfg = DataConfig.from_preset("keras_cifar", kind="image_folder", root=str(tmp_path), val_size=0,
                                 train_crop="batch_crop", num_workers=0)
    train = build_dataset(cfg, "train", train=True)
    resized = {i: train[i][0] for i in range(len(train))}  # [3, 1, 52, 52]: batch_crop only resizes items
    assert resized[0].shape == (3, 1, 52, 52)

    def batches(num_workers):
        data = DataConfig.from_dict({**cfg.to_dict(), "num_workers": num_workers})
        loader = build_train_loader(train, data=data, batch_size=4, seed=7)
        loader.batch_sampler.sampler.set_epoch(1)
        return list(loader)

    serial = batches(0)
    assert len(serial) == 2
    for clips, labels, indices in serial:
        assert clips.shape == (4, 3, 1, 48, 48)
        source = torch.stack([resized[i] for i in indices.tolist()])
        windows = {(t, l) for t in range(5) for l in range(5)
                   if all(torch.equal(c, s[..., t:t + 48, l:l + 48]) or torch.equal(c, s[..., t:t + 48, l:l + 48].flip(-1))
                          for c, s in zip(clips, source))}
        assert len(windows) >= 1  # every clip of the batch is the same window of its image (or its mirror)
    for (a, _, ia), (b, _, ib) in zip(serial, batches(2)):
        assert torch.equal(ia, ib) and torch.equal(a, b)
    with pytest.raises(ValueError, match="short_side must be at least image_size"):
        DataConfig.from_preset("keras_cifar", kind="image_folder", train_crop="batch_crop", short_side=40)


def test_image_folder_with_a_bad_image(tmp_path):
    make_image_folder(tmp_path)
    (tmp_path / "train" / "dog" / "broken.jpg").write_text("not a jpeg")
    cfg = DataConfig.from_preset("keras_cifar", kind="image_folder", root=str(tmp_path), val_size=0)
    train = build_dataset(cfg, "train", train=True)
    assert train.classes == ["cat", "dog"] and len(train) == 7
    items = [train[i] for i in range(len(train))]
    assert all(x.shape == (3, 1, 48, 48) for x, _, _ in items)
    assert train.num_skipped == 1 and train.bad_files() == [("train/dog/broken.jpg", "not an image or unreadable")]
    views, raw = read_video_views(tmp_path / "test" / "cat" / "0.png", cfg, return_frames=True)
    assert views.shape == (1, 3, 1, 48, 48) and raw.shape == (1, 1, 48, 48, 3)
    test = build_dataset(cfg, "test", train=False)
    assert torch.equal(test[0][0], views[0])
    with pytest.raises(ValueError, match="is not an image"):
        read_video_views(tmp_path / "x.mp4", cfg)
    with pytest.raises(ValueError, match="num_frames: 1"):
        DataConfig(kind="image_folder")


def test_archive_is_unpacked_once_into_the_cache(tmp_path):
    make_image_folder(tmp_path / "src" / "tiny")
    archive = tmp_path / "tiny.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "tiny", arcname="tiny")
    cfg = DataConfig.from_preset("keras_cifar", kind="image_folder", archive=str(archive),
                                 cache_dir=str(tmp_path / "cache"), val_size=2)
    prepare_dataset(cfg)
    root = dataset_root(cfg)
    assert root.name == "tiny" and root.parent.parent == tmp_path / "cache"
    stamp = root.stat().st_mtime_ns
    prepare_dataset(cfg)
    assert root.stat().st_mtime_ns == stamp
    train, val = build_dataset(cfg, "train", train=True), build_dataset(cfg, "val", train=False)
    assert (len(train), len(val)) == (4, 2)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [root.parent.name]  # no temporary leftovers
    (tmp_path / "bad.tar.gz").write_bytes(b"not an archive")
    with pytest.raises(ValueError, match="cannot unpack data archive"):
        prepare_dataset(DataConfig(kind="image_folder", num_frames=1, archive=str(tmp_path / "bad.tar.gz"),
                                   cache_dir=str(tmp_path / "cache")))
    with pytest.raises(FileNotFoundError, match="data archive not found"):
        prepare_dataset(DataConfig(kind="image_folder", num_frames=1, archive=str(tmp_path / "none.tar.gz")))


@pytest.mark.slow
def test_real_cifar10_jpeg_archive(shared_data, tmp_path):
    cfg = DataConfig.from_preset("keras_cifar", kind="image_folder", archive=str(shared_data / "cifar10_jpeg.tar.gz"),
                                 cache_dir=str(tmp_path))
    prepare_dataset(cfg)
    train, val, test = (build_dataset(cfg, s, train=False) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (40000, 10000, 10000)  # the Keras split
    assert train.classes == CIFAR_CLASSES
    clip, label, _ = test[0]
    assert clip.shape == (3, 1, 48, 48) and clip.std() > 0.05 and label == 0
