"""Check a video/image dataset folder and write a report. Never deletes or moves anything.

Usage:
    vivit-tl check-dataset ROOT [--out REPORT.json] [--workers 2] [--full]

Scans every video (.mp4 .avi .mkv .webm .mov) and image (.jpg .jpeg .png) under ROOT with a
process pool, using the training loader's own decoder (decord, PyAV fallback). By default it
decodes the first, middle and last frame of each video; ``--full`` decodes every frame and
reports how many really decode. Writes REPORT.json (unreadable files with reasons, class
counts per split, per-file frames / fps / resolution / duration) and REPORT.csv (one row per
file), and prints a summary. Exit status 1 when some files are unreadable.
"""

from __future__ import annotations

from pathlib import Path

from vivit_tl.data.check import check_dataset, summary, write_report
from vivit_tl.cli import make_parser
from vivit_tl.errors import run_cli


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("check-dataset", __doc__)
    parser.add_argument("root", type=Path, help="dataset folder, e.g. ROOT/<split>/<class>/*.mp4")
    parser.add_argument("--out", type=Path, default=None,
                        help="report path (.json; a .csv is written next to it). Default: ./check_<ROOT name>.json")
    parser.add_argument("--workers", type=int, default=2, help="processes (default 2; 0 = no pool)")
    parser.add_argument("--full", action="store_true", help="decode every frame (slower; exact decodable counts)")
    args = parser.parse_args(argv)
    if args.workers < 0:
        raise ValueError(f"--workers must be >= 0, got {args.workers}")
    report = check_dataset(args.root, workers=args.workers, full=args.full)
    json_path, csv_path = write_report(report, args.out or Path(f"check_{args.root.resolve().name}.json"))
    print(summary(report))
    print(f"report: {json_path} and {csv_path}")
    return 1 if report["num_unreadable"] else 0


if __name__ == "__main__":
    run_cli(main)
