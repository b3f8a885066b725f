"""vivit-tl check-dataset and vivit_tl.data.check: reports bad files, counts classes, deletes nothing."""

import json

from vivit_tl.data.check import check_dataset

from video_utils import make_bad_files, make_video_folder, run_tool


def snapshot(root):
    return sorted((str(p.relative_to(root)), p.is_symlink() or p.stat().st_size) for p in root.rglob("*"))


def test_check_dataset_reports_bad_files_and_counts(tmp_path):
    root = tmp_path / "data"
    good = make_video_folder(root, {"a": 2, "b": 1}, num_frames=10)
    make_video_folder(root, {"a": 1}, split="val", num_frames=10)
    expected = make_bad_files(root / "train" / "b", good[0])
    before = snapshot(root)
    report = check_dataset(root, workers=2, full=True, progress=False)
    assert snapshot(root) == before  # nothing deleted or changed
    assert report["num_files"] == 4 + len(expected) and report["num_unreadable"] == len(expected)
    reasons = {item["path"].split("/")[-1]: item["reason"].split(":")[0] for item in report["unreadable"]}
    assert reasons == expected
    assert report["class_counts"] == {"train": {"a": 2, "b": 1}, "val": {"a": 1}}
    row = next(r for r in report["files"] if r["path"] == "train/a/v0.mp4")
    assert (row["frames"], row["fps"], row["width"], row["height"], row["duration_s"]) == (10, 16.0, 32, 32, 0.625)
    assert check_dataset(root, workers=0, full=False, progress=False)["unreadable"] == report["unreadable"]


def test_check_dataset_cli(tmp_path, shared_data, monkeypatch, capsys):
    out = tmp_path / "report.json"
    code, stdout, stderr = run_tool("check_dataset.py", [str(shared_data / "videos"), "--out", str(out), "--workers", "0"],
                                    monkeypatch, capsys)
    assert code == 0, stderr
    assert "5 files" in stdout and "0 unreadable" in stdout
    report = json.loads(out.read_text())
    assert {r["path"]: r["frames"] for r in report["files"]}["mpeg4_audio_320x240.avi"] == 164
    assert out.with_suffix(".csv").read_text().startswith("path,split,class,ok,reason,frames")
    code, _, stderr = run_tool("check_dataset.py", [str(tmp_path / "nowhere")], monkeypatch, capsys)
    assert code == 2 and stderr.startswith("error: dataset folder not found")
    code, stdout, _ = run_tool("check_dataset.py", ["--help"], monkeypatch, capsys)
    assert code == 0 and "never deletes" in stdout.lower()
