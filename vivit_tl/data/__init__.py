"""Video and image datasets for vivit-tl.

    from vivit_tl.data import DataConfig, prepare_dataset, build_dataset, read_video_views

- `DataConfig`: every data setting (dataset kind and layout, clip sampling, transforms, loader).
- `prepare_dataset(cfg)`: generate / unpack / download once (call on the main process first).
- `build_dataset(cfg, split, train)`: a map-style dataset of ``(clip [3, F, H, W], label, video_index)``.
- `read_video_views(path, cfg)`: the evaluation views of one file.
"""

from .api import build_dataset, dataset_root, prepare_dataset, read_video_views
from .config import PRESETS, DataConfig
from .datasets import ClipDataset
from .decoding import ReadError

__all__ = ["ClipDataset", "DataConfig", "PRESETS", "ReadError", "build_dataset", "dataset_root",
           "prepare_dataset", "read_video_views"]
