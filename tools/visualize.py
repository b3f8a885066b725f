"""`vivit-tl visualize` in a checkout: `python tools/visualize.py --help`. The code is in vivit_tl/cli/visualize.py."""
import sys
from vivit_tl.cli import main
main(["visualize", *sys.argv[1:]])
