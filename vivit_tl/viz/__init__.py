"""Visualisation: TokenLearner attention over time, training curves, attention-in-box measurement.

- `render`: PNG grid (tokens x time steps over the frames) and animated GIF, from plain arrays.
- `viewer`: one self-contained HTML page to scrub through a clip's maps by layer, token and time.
- `curves`: training curves of a run's ``metrics.jsonl``.
- `boxes`: share of attention mass inside a box/mask vs the share of the frame it covers.
- `box_check`: that measurement over the synthetic dataset's ground-truth boxes (imports the data
  pipeline; import it explicitly).
"""

from vivit_tl.viz.boxes import attention_in_box, attention_in_mask, box_masks, step_boxes
from vivit_tl.viz.curves import plot_metrics
from vivit_tl.viz.render import animation_frames, render_animation, render_grid, token_overlays
from vivit_tl.viz.viewer import write_attention_html

__all__ = [
    "animation_frames",
    "attention_in_box",
    "attention_in_mask",
    "box_masks",
    "plot_metrics",
    "render_animation",
    "render_grid",
    "step_boxes",
    "token_overlays",
    "write_attention_html",
]
