"""`vivit-tl make-synthetic` in a checkout: `python tools/make_synthetic.py --help`. The code is in vivit_tl/cli/make_synthetic.py."""
import sys
from vivit_tl.cli import main
main(["make-synthetic", *sys.argv[1:]])
