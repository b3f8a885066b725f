"""`vivit-tl attention-box-check` in a checkout: `python tools/attention_box_check.py --help`. The code is in vivit_tl/cli/attention_box_check.py."""
import sys
from vivit_tl.cli import main
main(["attention-box-check", *sys.argv[1:]])
