"""`vivit-tl export` in a checkout: `python tools/export.py --help`. The code is in vivit_tl/cli/export.py."""
import sys
from vivit_tl.cli import main
main(["export", *sys.argv[1:]])
