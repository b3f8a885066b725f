"""`vivit-tl train` in a checkout: `python tools/train.py --help`. The code is in vivit_tl/cli/train.py."""
import sys
from vivit_tl.cli import main
main(["train", *sys.argv[1:]])
