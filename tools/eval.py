"""`vivit-tl eval` in a checkout: `python tools/eval.py --help`. The code is in vivit_tl/cli/eval.py."""
import sys
from vivit_tl.cli import main
main(["eval", *sys.argv[1:]])
