"""`vivit-tl flops` in a checkout: `python tools/flops.py --help`. The code is in vivit_tl/cli/flops.py."""
import sys
from vivit_tl.cli import main
main(["flops", *sys.argv[1:]])
