"""List the packaged training configs, print one, or copy one out for editing.

Usage:
    vivit-tl configs                                   # name and first comment line of each
    vivit-tl configs --show kinetics400_vivit_b16x2_tl  # print it
    vivit-tl configs --copy kinetics400_vivit_b16x2_tl my.yaml
    vivit-tl train --config my.yaml                    # then train with the edited copy

A packaged config is used by name (``vivit-tl train --config cifar10_vit_tl``); any YAML file by path.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from vivit_tl.cli import make_parser
from vivit_tl.config import packaged_configs
from vivit_tl.errors import UserError, did_you_mean, run_cli


def summary_line(path: Path) -> str:
    """The first comment line of a config file, without the ``#``."""
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
    return ""


def packaged(name: str) -> Path:
    configs = packaged_configs()
    if name not in configs:
        raise UserError(f"no packaged config '{name}'{did_you_mean(name, list(configs))}; "
                        f"packaged configs: {', '.join(configs)}")
    return configs[name]


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("configs", __doc__)
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--show", metavar="NAME", help="print a packaged config")
    what.add_argument("--copy", nargs=2, metavar=("NAME", "OUT"), help="copy a packaged config to OUT")
    parser.add_argument("--force", action="store_true", help="with --copy: overwrite OUT if it exists")
    args = parser.parse_args(argv)
    if args.show:
        print(packaged(args.show).read_text(), end="")
    elif args.copy:
        name, out = args.copy[0], Path(args.copy[1])
        source = packaged(name)
        if out.is_dir():
            out = out / source.name
        if out.exists() and not args.force:
            raise UserError(f"{out} exists (use --force to overwrite)")
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, out)
        print(f"wrote {out}: edit it, then `vivit-tl train --config {out}`")
    else:
        configs = packaged_configs()
        width = max(map(len, configs))
        for name, path in configs.items():
            print(f"{name:<{width}}  {summary_line(path)}")
    return 0


if __name__ == "__main__":
    run_cli(main)
