"""Show where each learned token looks: TokenLearner attention maps over the frames of a clip.

Usage:
    vivit-tl visualize CHECKPOINT VIDEO_OR_IMAGE --out DIR
        [--layer 0 [1 ...]] [--tokens 0 3 5] [--view N] [--fps 8] [--no-animation]
        [--device auto|cpu|cuda] [--dtype float32|bfloat16|float16]
    vivit-tl visualize CHECKPOINT VIDEO_OR_IMAGE --html OUT.html [--layer ...] [--tokens ...] [--view N]

For every TokenLearner layer of the model (or those given by ``--layer``, 0-based in model order)
it writes

- ``DIR/<name>_layer<L>.png``: a grid with the clip on top (the central frame of each tubelet time
  step) and one row per learned token, one column per time step: the token's attention map,
  upsampled bilinearly to frame size, overlaid on the frame. An image model gives one column.
- ``DIR/<name>_layer<L>.gif`` (videos only): the clip at ``--fps`` with the plain frame and one
  overlay panel per token; each map stays on for the frames of its tubelet step; a white bar at the
  bottom marks the position in the clip.

With ``--html OUT.html`` (alone or with ``--out``) it writes one self-contained page to explore the
same maps in a browser, without a server or network: play/pause and a time slider over the frames,
a layer and a token selector (or all tokens as a grid), the overlay's opacity, the top-5 prediction
and each map's peak/mean ratio (see ``vivit_tl.viz.viewer``).

The file is read with the checkpoint's preprocessing (``read_video_views``); the maps are those of
one evaluation view (``--view``, default the central one), the title shows the label predicted from
all views (logits averaged, as ``vivit-tl predict``). Each map is scaled to its own peak for display.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vivit_tl.cli import make_parser
from vivit_tl.device import add_device_arguments
from vivit_tl.errors import UserError, run_cli
from vivit_tl.predict import Predictor
from vivit_tl.viz.render import render_animation, render_grid
from vivit_tl.viz.viewer import write_attention_html


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = make_parser("visualize", __doc__)
    parser.add_argument("checkpoint", help="model folder (config.json or model.json + model.safetensors), run directory, or hf:<repo id>")
    parser.add_argument("file", type=Path, help="video or image file")
    parser.add_argument("--out", type=Path, default=None, help="output directory of the PNG grids and GIFs")
    parser.add_argument("--html", type=Path, default=None, metavar="OUT.html",
                        help="write the interactive viewer page of the clip to this file")
    parser.add_argument("--layer", type=int, nargs="+", default=None,
                        help="TokenLearner layers to show, 0-based (default: all)")
    parser.add_argument("--tokens", type=int, nargs="+", default=None, help="learned tokens to show (default: all)")
    parser.add_argument("--view", type=int, default=None,
                        help="evaluation view whose maps are shown (default: the central clip and crop)")
    parser.add_argument("--fps", type=float, default=8.0, help="animation / playback frame rate (default 8)")
    parser.add_argument("--no-animation", action="store_true", help="write only the PNG grids")
    add_device_arguments(parser)
    return parser.parse_args(argv)


def central_view(num_clips: int, num_crops: int) -> int:
    """Index of the middle clip's centre crop; views are ordered clip-major (clip * crops + crop)."""
    return (num_clips // 2) * num_crops + num_crops // 2


def check_indices(name: str, chosen: list[int] | None, count: int) -> list[int]:
    """``chosen`` (default: all of ``range(count)``), refusing out-of-range values by name."""
    if chosen is None:
        return list(range(count))
    bad = [i for i in chosen if not 0 <= i < count]
    if bad:
        raise UserError(f"{name} {bad} out of range: there are {count} (valid 0..{count - 1})")
    return chosen


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.out is None and args.html is None:
        raise UserError("nothing to write: give --out DIR (PNG grids, GIFs) and/or --html OUT.html (viewer page)")
    if args.fps <= 0:
        raise UserError(f"--fps must be > 0, got {args.fps}")
    predictor = Predictor.load(args.checkpoint, device=args.device, dtype=args.dtype)
    views, frames = predictor.read(args.file, return_frames=True)  # [V, 3, F, H, W], [V, F, H, W, 3]
    clips = predictor.data_config.eval_clips if predictor.data_config.is_video else 1
    view = args.view if args.view is not None else central_view(clips, len(views) // clips)
    view = check_indices("--view", [view], len(views))[0]

    probs = predictor.probabilities(views)
    best = int(probs.argmax())
    _, maps = predictor.forward(views[view : view + 1], return_maps=True)
    maps = [m.float().cpu() for m in maps]  # list of [1, T, S, Hg, Wg]
    if not maps:
        raise UserError(f"{args.checkpoint}: the model has no TokenLearner layer (token_learner="
                        f"{predictor.info['model_config'].get('token_learner')!r}): no attention maps to show")
    layers = check_indices("--layer", args.layer, len(maps))
    tokens = check_indices("--tokens", args.tokens, maps[0].shape[2])
    clip = np.asarray(frames[view])  # [F, H, W, 3]
    tubelet = clip.shape[0] // maps[0].shape[1]

    if args.html is not None:
        page = write_attention_html(
            args.html, clip, [maps[layer][0] for layer in layers], tubelet,  # each [T, S, Hg, Wg]
            layer_names=[f"TokenLearner layer {layer}" for layer in layers], tokens=tokens,
            top=predictor.top_k(probs), fps=args.fps,
            title=args.file.name if len(views) == 1 else
            f"{args.file.name} - maps of view {view} of {len(views)}, prediction from all {len(views)} views")
        print(f"wrote {page} ({page.stat().st_size / 1e6:.2f} MB)")
    if args.out is None:
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for layer in tqdm(layers, desc="render", unit="layer"):
        layer_maps = maps[layer][0]  # [T, S, Hg, Wg]
        title = (f"{args.file.name} - TokenLearner layer {layer} - predicted: {predictor.classes[best]} "
                 f"({100 * float(probs[best]):.0f}%, {len(views)} view{'s' * (len(views) > 1)})")
        stem = args.out / f"{args.file.stem}_layer{layer}"
        written = [render_grid(clip, layer_maps, tubelet, stem.with_suffix(".png"), tokens=tokens, title=title)]
        if clip.shape[0] > 1 and not args.no_animation:
            written.append(render_animation(clip, layer_maps, tubelet, stem.with_suffix(".gif"),
                                            tokens=tokens, fps=args.fps))
        tqdm.write("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    run_cli(main)
