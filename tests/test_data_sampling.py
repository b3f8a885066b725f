"""Clip sampling in frame indices."""

import numpy as np
import pytest

from vivit_tl.data.sampling import clip_span, eval_clip_indices, train_clip_indices


@pytest.mark.parametrize("num_frames,stride", [(32, 2), (16, 4), (8, 1)])
def test_train_clip_is_strided_and_in_range(num_frames, stride):
    n = 200
    starts = set()
    for u in np.linspace(0, 0.999, 50):
        idx = train_clip_indices(n, num_frames, stride, u)
        assert idx.shape == (num_frames,)
        assert (np.diff(idx) == stride).all()
        assert idx[0] >= 0 and idx[-1] < n
        starts.add(int(idx[0]))
    assert min(starts) == 0 and max(starts) == n - clip_span(num_frames, stride)


def test_short_video_loops_or_pads():
    idx = train_clip_indices(10, 8, 2, 0.7, short_video="loop")
    np.testing.assert_array_equal(idx, [0, 2, 4, 6, 8, 0, 2, 4])
    idx = train_clip_indices(10, 8, 2, 0.7, short_video="pad")
    np.testing.assert_array_equal(idx, [0, 2, 4, 6, 8, 9, 9, 9])
    one = eval_clip_indices(1, 4, 3, num_clips=2)
    np.testing.assert_array_equal(one, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="short_video"):
        train_clip_indices(10, 8, 2, 0.5, short_video="wrap")


def test_eval_clips_are_uniform_and_centred():
    centre = eval_clip_indices(100, 10, 2, num_clips=1)  # span 19, slack 81
    assert centre.shape == (1, 10) and centre[0, 0] == 40
    clips = eval_clip_indices(100, 10, 2, num_clips=4)
    starts = clips[:, 0]
    assert clips.shape == (4, 10) and (np.diff(starts) > 0).all()
    assert starts[0] > 0 and clips[-1, -1] < 100
    assert np.ptp(np.diff(starts)) <= 1  # equally spaced up to rounding
    np.testing.assert_array_equal(eval_clip_indices(100, 10, 2, 4), clips)  # deterministic


def test_zero_frames_is_an_error():
    with pytest.raises(ValueError):
        train_clip_indices(0, 8, 2, 0.5)
