"""`vivit-tl plot-metrics` in a checkout: `python tools/plot_metrics.py --help`. The code is in vivit_tl/cli/plot_metrics.py."""
import sys
from vivit_tl.cli import main
main(["plot-metrics", *sys.argv[1:]])
