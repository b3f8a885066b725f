"""The HTML attention viewer (vivit_tl.viz.viewer): its payload, and the page in a headless Chromium.

The browser tests drive the Debian ``chromium`` (or ``$VIVIT_TL_CHROMIUM``) through Playwright and
skip when either is missing. The screenshot is written to ``$VIVIT_TL_ARTIFACTS`` when set, else to
pytest's tmp dir.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vivit_tl.viz.render import overlay, peak_to_mean, upsample_maps
from vivit_tl.viz.viewer import quantize_maps, viewer_data, write_attention_html

from viz_utils import viewer_page_data

FRAMES, TUBELET, TOKENS, GRID, SIZE = 8, 2, 3, 4, 32


def clip(seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """Random frames ``[8, 32, 32, 3]`` and two layers of random maps ``[4, 3, 4, 4]``."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (FRAMES, SIZE, SIZE, 3), dtype=np.uint8)
    maps = [rng.random((FRAMES // TUBELET, TOKENS, GRID, GRID)).astype(np.float32) for _ in range(2)]
    return frames, maps


def test_quantize_maps_scales_each_map_to_0_255():
    maps = np.array([[[0.2, 0.4], [0.6, 1.0]], [[5.0, 5.0], [5.0, 5.0]]], dtype=np.float32)  # [2, 2, 2]
    quantized = quantize_maps(maps)
    assert quantized.dtype == np.uint8
    np.testing.assert_array_equal(quantized[0], [[0, 64], [128, 255]])
    np.testing.assert_array_equal(quantized[1], 0)  # a constant map has no peak to show


def test_page_embeds_frames_maps_and_ratios(tmp_path):
    frames, maps = clip()
    path = write_attention_html(tmp_path / "v.html", frames, maps, TUBELET, tokens=[2, 0], title="a </script> b",
                                top=[{"label": "x", "prob": 0.75}], layer_names=["tl 0", "tl 1"])
    data = viewer_page_data(path)  # the title's "</script>" did not end the script early
    assert data["title"] == "a </script> b" and data["top"] == [{"label": "x", "prob": 0.75}]
    assert len(data["frames"]) == FRAMES
    webp = base64.b64decode(data["frames"][3].removeprefix("data:image/webp;base64,"))
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(webp))), frames[3])  # lossless, model size
    for layer, name, raw in zip(data["layers"], ["tl 0", "tl 1"], maps):
        assert layer["name"] == name and layer["token_ids"] == [2, 0]
        stored = np.frombuffer(base64.b64decode(layer["maps"]), np.uint8).reshape(4, 2, GRID, GRID)  # [T, K, Hg, Wg]
        np.testing.assert_array_equal(stored, quantize_maps(raw[:, [2, 0]]))
        np.testing.assert_allclose(layer["peak_mean"], peak_to_mean(raw[:, [2, 0]]).T, atol=1e-3)  # [K, T]
    assert not any(word in path.read_text() for word in ("http:", "https:", "src=\"", "<link"))  # nothing to fetch


def test_viewer_data_refuses_mismatched_input():
    frames, maps = clip()
    with pytest.raises(ValueError, match="do not match"):
        viewer_data(frames[:6], maps, TUBELET)
    with pytest.raises(ValueError, match="no attention maps"):
        viewer_data(frames, [], TUBELET)
    with pytest.raises(ValueError, match="2 layer names for 1 layers"):
        viewer_data(frames, maps[:1], TUBELET, layer_names=["a", "b"])


# ---------------------------------------------------------------------------------------------- browser


def chromium_path() -> str | None:
    return os.environ.get("VIVIT_TL_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    executable = chromium_path()
    if executable is None:
        pytest.skip("no chromium found (apt-get install chromium, or set VIVIT_TL_CHROMIUM)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable)
        yield browser
        browser.close()


def open_page(browser, path: Path):
    """Open a written page; returns (page, the console errors and page errors seen)."""
    page = browser.new_page(viewport={"width": 1000, "height": 640})
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(path.resolve().as_uri())
    try:
        page.wait_for_selector("canvas[data-token]", timeout=10_000)
    except Exception as error:  # playwright's TimeoutError
        pytest.fail(f"the page drew no map panel ({error.__class__.__name__}); its errors: {errors}")
    return page, errors


def canvas_pixels(page, token: int) -> np.ndarray:
    """The RGB pixels ``[H, W, 3]`` of the overlay panel of stored token ``token``."""
    flat = page.eval_on_selector(
        f"canvas[data-token='{token}']",
        "c => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)")
    return np.array(flat, dtype=np.uint8).reshape(SIZE, SIZE, 4)[..., :3]


def expected_overlay(frames: np.ndarray, maps: np.ndarray, frame: int, token: int, alpha: float) -> np.ndarray:
    """`render.overlay` of the stored (quantised) map of ``token`` at ``frame``'s tubelet step."""
    heat = upsample_maps(quantize_maps(maps[frame // TUBELET, token]) / 255.0, (SIZE, SIZE))  # [H, W]
    return overlay(frames[frame], heat, alpha)


def artefact_dir(tmp_path: Path) -> Path:
    directory = Path(os.environ.get("VIVIT_TL_ARTIFACTS", tmp_path))
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def test_page_controls_change_the_map_shown(browser, tmp_path):
    frames, maps = clip()
    path = write_attention_html(tmp_path / "viewer.html", frames, maps, TUBELET,
                                top=[{"label": "x", "prob": 0.6}, {"label": "y", "prob": 0.4}], title="clip")
    page, errors = open_page(browser, path)
    assert len(page.query_selector_all("canvas[data-token]")) == TOKENS  # all tokens as a grid
    # the page draws what render.overlay draws (bilinear upsampling, grey frame, jet blended by attention)
    start = canvas_pixels(page, 1)
    assert np.abs(start.astype(int) - expected_overlay(frames, maps[0], 0, 1, 0.7)).max() <= 2

    slider = page.locator("#time")
    slider.focus()
    page.keyboard.press("ArrowRight")  # frame 1: the next frame, the same tubelet step's map
    assert np.abs(canvas_pixels(page, 1).astype(int) - expected_overlay(frames, maps[0], 1, 1, 0.7)).max() <= 2
    assert page.text_content("#time-label").startswith("frame 2/8")
    page.keyboard.press("ArrowRight")  # frame 2: the next step's map on the next frame
    moved = canvas_pixels(page, 1)
    assert np.abs(moved.astype(int) - expected_overlay(frames, maps[0], 2, 1, 0.7)).max() <= 2
    assert not np.array_equal(moved, start)

    page.select_option("#layer", "1")
    other_layer = canvas_pixels(page, 1)
    assert np.abs(other_layer.astype(int) - expected_overlay(frames, maps[1], 2, 1, 0.7)).max() <= 2

    page.select_option("#token", "2")
    assert [c.get_attribute("data-token") for c in page.query_selector_all("canvas[data-token]")] == ["2"]
    caption = page.text_content("figure:nth-child(2) figcaption")
    assert caption == f"token 2 · peak/mean {peak_to_mean(maps[1][1, 2]):.2f}"

    page.locator("#opacity").fill("0")  # no overlay: the frame in grey
    plain = canvas_pixels(page, 2)
    assert np.abs(plain.astype(int) - expected_overlay(frames, maps[1], 2, 2, 0.0)).max() <= 1

    page.click("#ratios tr:nth-child(2) td:nth-child(3)")  # the table's cell of stored token 0 at step 1
    assert [c.get_attribute("data-token") for c in page.query_selector_all("canvas[data-token]")] == ["0"]
    assert page.input_value("#token") == "0" and page.input_value("#time") == str(TUBELET)

    page.click("#play")
    page.wait_for_function("document.getElementById('time').value !== '2'")  # playback advances the frame
    page.click("#play")
    assert page.text_content("#play") == "play"

    shot = artefact_dir(tmp_path) / "viewer.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 0
    assert errors == []
    page.close()


def test_image_page_has_no_time_controls(browser, tmp_path):
    frames, maps = clip()
    path = write_attention_html(tmp_path / "image.html", frames[:1], [maps[0][:1]], 1)
    page, errors = open_page(browser, path)
    assert page.is_disabled("#time") and page.is_disabled("#play")
    assert page.text_content("#time-label").startswith("frame 1/1")
    assert errors == []
    page.close()
