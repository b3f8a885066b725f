"""`vivit-tl predict` in a checkout: `python tools/predict.py --help`. The code is in vivit_tl/cli/predict.py."""
import sys
from vivit_tl.cli import main
main(["predict", *sys.argv[1:]])
