"""`vivit-tl check-dataset` in a checkout: `python tools/check_dataset.py --help`. The code is in vivit_tl/cli/check_dataset.py."""
import sys
from vivit_tl.cli import main
main(["check-dataset", *sys.argv[1:]])
