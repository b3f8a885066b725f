"""`DataConfig`: every data setting in one YAML-friendly dataclass, plus named presets."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vivit_tl.errors import reject_unknown_keys

VIDEO_KINDS = ("synthetic", "video_folder", "video_list", "kinetics_csv", "rawframes", "ucf101", "hmdb51", "ssv2")
IMAGE_KINDS = ("cifar10", "image_folder")
KINDS = VIDEO_KINDS + IMAGE_KINDS
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Named bundles of field values. A preset gives defaults; explicit fields override it.
PRESETS: dict[str, dict[str, Any]] = {
    # The ViViT Kinetics recipe (SPEC §2): 32 frames at stride 2, short side 256, crop 224,
    # scale jitter 0.9-1.33, 4 temporal clips x 3 spatial crops at evaluation.
    "kinetics": dict(num_frames=32, frame_stride=2, image_size=224, short_side=256,
                     scale_jitter=[0.9, 1.33], hflip=True, eval_clips=4, eval_crops=3),
    # The Keras CIFAR-10 example (SPEC §5): 40k/10k/10k, rescale to [0, 1] (no mean/std),
    # resize 32 -> 52, random crop 48, horizontal flip. At evaluation Keras' RandomCrop layer
    # resizes the whole image to 48x48 (no crop) and RandomFlip is the identity.
    "keras_cifar": dict(num_frames=1, frame_stride=1, image_size=48, short_side=52,
                        scale_jitter=[1.0, 1.0], hflip=True, mean=None, std=None,
                        eval_resize="full", eval_clips=1, eval_crops=1,
                        val_size=10000, split_seed=0),
    # The embedded synthetic dataset = the dataclass defaults (see DataConfig).
    "synthetic": dict(kind="synthetic"),
}


def default_cache_dir() -> Path:
    """Where generated and unpacked datasets live: ``$VIVIT_TL_CACHE`` or ``~/.cache/vivit_tl``."""
    env = os.environ.get("VIVIT_TL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vivit_tl"


@dataclass
class DataConfig:
    """Everything the data pipeline needs; all fields are plain YAML/JSON values.

    Dataset:
        kind: 'synthetic' | 'video_folder' | 'video_list' | 'kinetics_csv' | 'rawframes' | 'ucf101' |
            'hmdb51' | 'ssv2' | 'cifar10' | 'image_folder' (the layouts: docs, "Dataset layouts").
        root: dataset root (folders ``root/<split>/<class>/*``; list/CSV paths are relative to it).
        data_prefix: folder of the listed videos (or frame folders), relative to ``root``;
            ``{split}`` is replaced (e.g. ``"{split}"`` for lists whose paths are relative to
            ``train/`` and ``val/``). Every listed kind (list, CSV, rawframes, UCF-101, HMDB-51, SSv2).
        annotation_dir: folder of the official split files, relative to ``root``: UCF-101's
            classInd.txt / trainlist0N.txt / testlist0N.txt, HMDB-51's ``<class>_test_splitN.txt``,
            SSv2's labels.json and something-something-v2-{train,validation}.json.
        fold: the official split (1, 2 or 3) of 'ucf101' and 'hmdb51'.
        filename_tmpl, start_index: 'rawframes' frame files: frame i (from 0) of a clip is
            ``frame_dir/filename_tmpl.format(i + start_index)`` (mmaction2's defaults: img_{:05d}.jpg, 1).
            For 'synthetic' it defaults to the cache; for an ``archive`` to the unpacked folder.
        archive: a .tar/.tar.gz/.zip that ``prepare_dataset`` unpacks into the cache (e.g. the
            CIFAR-10 JPEG tarball); ``root`` then defaults to the unpacked tree.
        cache_dir: cache for generated/unpacked data (default ``$VIVIT_TL_CACHE`` or ~/.cache/vivit_tl).
        train_split, val_split: split names; ``val_size`` > 0 carves ``val_split`` out of
            ``train_split`` (an int = number of samples, a float < 1 = fraction), a random subset
            chosen by ``split_seed``; ``split_seed: null`` takes the last ``val_size`` samples
            instead (kind 'cifar10' only: Keras' ``x_train[40000:]``).
        list_file: 'video_list' annotation, ``{split}`` is replaced (lines ``relative/path label``).
        csv_file: 'kinetics_csv' annotation (columns label,youtube_id,time_start,time_end[,split]).
        path_pattern: 'kinetics_csv' file name pattern; fields {split} {label} {youtube_id}
            {time_start} {time_end} (ints, so ``{time_start:06d}`` works).
        classes_file: optional class names, one per line (line i = label i; names may contain
            spaces) for 'video_list' and 'rawframes' (mmaction2's label map files).
        classes: fixed class list (e.g. from a checkpoint); otherwise the sorted classes of the
            train split (falling back to the requested split) are used.
        download: let torchvision download CIFAR-10 when it is missing.
        synthetic: overrides of the synthetic generator (see ``vivit_tl.data.synthetic.SyntheticSpec``).
    Clips:
        num_frames, frame_stride: a clip is ``num_frames`` frames ``frame_stride`` apart.
        short_video: 'loop' (wrap around) or 'pad' (repeat the last frame) when a video is
            shorter than a clip.
        decoder: 'auto' (decord, PyAV fallback) | 'decord' | 'pyav' (the PyAV reader: seeks to the
            keyframe and skips unneeded non-reference frames; the fastest on CPU in
            benchmarks/bench_loader.py) | 'torchcodec' (PyTorch's decoder, optional extra
            ``vivit-tl[torchcodec]``, needs FFmpeg); num_threads: decoder threads per worker (null: the usable
            CPUs divided among the workers of all local processes, at least 1).
        decode_device: 'cpu', or 'cuda' to decode with NVDEC (``decoder: torchcodec`` only; the
            DataLoader workers are then started with 'spawn').
        clips_per_video: K random training clips (each with its own augmentation) from one decode of
            a video, VideoMAE's repeated sampling. Each clip is a sample of the batch: a batch of
            ``optim.batch_size`` clips holds ``batch_size / K`` videos, so an epoch (every video once)
            has K times more steps. ``optim.batch_size`` must be a multiple of K.
        max_tries: how many substitute samples a training item tries after a bad file.
        decode_timeout_s: a decode that has not returned after this many seconds is stopped (its
            file is skipped and counted as a bad file); decoding then runs in a helper process per
            DataLoader worker. 0 decodes in the worker itself, unguarded.
    Transforms:
        image_size: output crop side. short_side: evaluation short-side size (train base size).
        train_crop: 'scale_jitter' (short side to short_side * U(scale_jitter), random crop),
            'random_resized_crop' (area ``rrc_scale``, aspect ``rrc_ratio``) or 'batch_crop' (the
            whole frame to short_side x short_side, then one random crop window shared by the
            process's batch, flips per clip: Keras 2.7's RandomCrop, current when the Keras example was made).
        hflip: random horizontal flip at training. mean/std: normalisation after scaling to
            [0, 1] (None = no normalisation).
    Clip augmentation at training (each off by default; one random draw per clip, so every frame
    of a clip gets the same operation with the same parameters), applied after the crop and flip:
        color_jitter: probability of scenic's colour augmentation (scenic's Kinetics recipe: 0.8):
            ``v2.ColorJitter`` with brightness 0.125, contrast and saturation 0.6-1.4, hue +-0.2.
        grayscale: probability of dropping the colour (``rgb_to_grayscale``; scenic's prob_color_drop).
        rand_augment: ``[num_ops, magnitude]`` of ``v2.RandAugment`` (e.g. ``[2, 9]``; null: off), the
            magnitude on the 0-10 scale of the RandAugment paper and timm (``num_magnitude_bins=11``).
        random_erasing: probability of ``v2.RandomErasing`` on the normalised clip (the same
            rectangle of the same per-pixel normal noise on every frame; VideoMAE uses 0.25).
        eval_resize: 'short_side' (resize short side, then crops), 'full' (resize the whole
            frame to image_size x image_size, one view per clip) or 'keras' (as 'full', in Keras'
            two steps: the whole frame to short_side square, then to image_size, bilinear without
            antialiasing, in float).
        eval_clips, eval_crops: K temporal clips x 1 or 3 spatial crops per video at evaluation.
    Loader: num_workers (the trainer builds its DataLoader with it; training workers persist across
        epochs), prefetch_factor (batches each worker loads ahead).

    The defaults are the main job's: the synthetic dataset (96x96 videos of 32 frames), 16-frame
    clips at stride 2, 96 px crops with a little scale jitter, and no horizontal flip (it would
    swap the left/right and rotation classes). Use the 'kinetics' or 'keras_cifar' presets for
    the reference recipes.
    """

    kind: str = "synthetic"
    root: str | None = None
    archive: str | None = None
    cache_dir: str | None = None
    preset: str | None = None
    train_split: str = "train"
    val_split: str = "val"
    val_size: float = 0
    split_seed: int | None = 0
    data_prefix: str = ""
    annotation_dir: str = ""
    fold: int = 1
    filename_tmpl: str = "img_{:05d}.jpg"
    start_index: int = 1
    list_file: str = "{split}.txt"
    csv_file: str = "{split}.csv"
    path_pattern: str = "{split}/{label}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4"
    classes_file: str | None = None
    classes: list[str] | None = None
    download: bool = False
    synthetic: dict[str, Any] = field(default_factory=dict)
    num_frames: int = 16
    frame_stride: int = 2
    short_video: str = "loop"
    decoder: str = "auto"
    num_threads: int | None = None
    decode_device: str = "cpu"
    clips_per_video: int = 1
    max_tries: int = 10
    decode_timeout_s: float = 60.0
    image_size: int = 96
    short_side: int = 96
    train_crop: str = "scale_jitter"
    scale_jitter: list[float] = field(default_factory=lambda: [1.0, 1.15])
    rrc_scale: list[float] = field(default_factory=lambda: [0.25, 1.0])
    rrc_ratio: list[float] = field(default_factory=lambda: [0.75, 1.3333])
    hflip: bool = False
    mean: list[float] | None = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] | None = field(default_factory=lambda: list(IMAGENET_STD))
    color_jitter: float = 0.0  # probability of the colour jitter (scenic: 0.8)
    grayscale: float = 0.0  # probability of greyscale
    rand_augment: list[int] | None = None  # [num_ops, magnitude 0-10]
    random_erasing: float = 0.0  # probability of erasing one rectangle (on the normalised clip)
    eval_resize: str = "short_side"
    eval_clips: int = 1
    eval_crops: int = 1
    num_workers: int = 2
    prefetch_factor: int = 2

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None = None, **overrides: Any) -> "DataConfig":
        """Build from a dict (e.g. YAML); a ``preset`` key supplies defaults that other keys override.

        Raises:
            ValueError: on an unknown key (listing the valid ones), an unknown preset or a bad value.
        """
        d = {**(d or {}), **overrides}
        reject_unknown_keys(cls, d, "data config key")
        preset = d.get("preset")
        if preset is not None:
            if preset not in PRESETS:
                raise ValueError(f"unknown data preset {preset!r}; valid presets: {sorted(PRESETS)}")
            d = {**PRESETS[preset], **d}
        return cls(**d)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "DataConfig":
        """``DataConfig.from_dict({'preset': name, **overrides})``."""
        return cls.from_dict({"preset": name}, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict that ``from_dict`` turns back into an equal config."""
        return dataclasses.asdict(self)

    @property
    def is_video(self) -> bool:
        return self.kind in VIDEO_KINDS

    @property
    def samples_noun(self) -> str:
        """What one sample of this dataset is called in messages: "videos" or "images"."""
        return "videos" if self.is_video else "images"

    @property
    def num_eval_clips(self) -> int:
        """Temporal clips per sample at evaluation (images have one)."""
        return self.eval_clips if self.is_video else 1

    @property
    def num_eval_crops(self) -> int:
        """Spatial views per clip at evaluation (one when the whole frame is resized)."""
        return 1 if self.eval_whole_frame else self.eval_crops

    @property
    def eval_whole_frame(self) -> bool:
        """Evaluation resizes the whole frame to ``image_size`` square (``eval_resize`` 'full' or 'keras')."""
        return self.eval_resize in ("full", "keras")

    @property
    def num_views(self) -> int:
        """Evaluation views per sample: clips x crops."""
        return self.num_eval_clips * self.num_eval_crops

    def cache_path(self) -> Path:
        return Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_dir()

    def validate(self) -> None:
        """Raise ValueError naming the first bad field value."""
        choices = {"kind": KINDS, "short_video": ("loop", "pad"), "decoder": ("auto", "decord", "pyav", "torchcodec"),
                   "decode_device": ("cpu", "cuda"),
                   "train_crop": ("scale_jitter", "random_resized_crop", "batch_crop"),
                   "eval_resize": ("short_side", "full", "keras")}
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ValueError(f"data config {name}={getattr(self, name)!r} is not one of {list(valid)}")
        for name in ("num_frames", "frame_stride", "image_size", "short_side", "eval_clips",
                     "num_threads", "max_tries", "clips_per_video", "prefetch_factor"):
            value = getattr(self, name)
            if name == "num_threads" and value is None:
                continue  # automatic
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"data config {name}={value!r} must be a positive integer"
                                 + (" or null (automatic)" if name == "num_threads" else ""))
        if self.decode_device == "cuda" and self.decoder != "torchcodec":
            raise ValueError(f"data config decode_device='cuda' needs decoder='torchcodec', not {self.decoder!r}")
        if self.train_crop == "batch_crop" and self.short_side < self.image_size:
            raise ValueError(f"data config train_crop='batch_crop' crops image_size={self.image_size} out of "
                             f"short_side={self.short_side}: short_side must be at least image_size")
        for name in ("color_jitter", "grayscale", "random_erasing"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"data config {name}={getattr(self, name)!r} must be a probability in [0, 1]")
        if self.rand_augment is not None and (len(self.rand_augment) != 2 or self.rand_augment[0] < 0
                                              or not 0 <= self.rand_augment[1] <= 10):
            raise ValueError(f"data config rand_augment={self.rand_augment!r} must be [num_ops >= 0, magnitude "
                             "in 0..10] or null")
        if self.random_erasing and self.train_crop == "batch_crop":
            raise ValueError("data config random_erasing needs a crop per clip: it cannot be used with "
                             "train_crop='batch_crop'")
        if self.fold not in (1, 2, 3):
            raise ValueError(f"data config fold={self.fold!r} must be 1, 2 or 3 (the official splits)")
        if not isinstance(self.start_index, int) or self.start_index < 0:
            raise ValueError(f"data config start_index={self.start_index!r} must be an integer >= 0")
        try:
            self.filename_tmpl.format(self.start_index)
        except (ValueError, IndexError, KeyError) as exc:
            raise ValueError(f"data config filename_tmpl={self.filename_tmpl!r} must format one frame number "
                             f"(like 'img_{{:05d}}.jpg'): {exc}") from None
        if isinstance(self.decode_timeout_s, bool) or not isinstance(self.decode_timeout_s, (int, float)) \
                or self.decode_timeout_s < 0:
            raise ValueError(f"data config decode_timeout_s={self.decode_timeout_s!r} must be a number of "
                             "seconds >= 0 (0: no watchdog)")
        if self.eval_crops not in (1, 3):
            raise ValueError(f"data config eval_crops={self.eval_crops!r} must be 1 or 3")
        if not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise ValueError(f"data config num_workers={self.num_workers!r} must be an integer >= 0")
        for name in ("scale_jitter", "rrc_scale", "rrc_ratio"):
            value = getattr(self, name)
            if len(value) != 2 or not 0 < value[0] <= value[1]:
                raise ValueError(f"data config {name}={value!r} must be [low, high] with 0 < low <= high")
        if (self.mean is None) != (self.std is None) or (self.mean is not None and (
                len(self.mean) != 3 or len(self.std) != 3)):
            raise ValueError(f"data config mean={self.mean!r}, std={self.std!r}: give both (3 values each) or neither")
        if self.val_size < 0:
            raise ValueError(f"data config val_size={self.val_size!r} must be >= 0")
        if self.split_seed is None and self.kind != "cifar10":
            raise ValueError("data config split_seed=None (the last val_size samples) is only for kind 'cifar10', "
                             f"whose samples are in their original order; kind={self.kind!r} needs an integer seed")
        if self.kind not in VIDEO_KINDS and self.num_frames != 1:
            raise ValueError(f"data config num_frames={self.num_frames} but kind={self.kind!r} is an "
                             "image dataset (one-frame clips): set num_frames: 1")
