"""``python -m vivit_tl <command> ...``: the ``vivit-tl`` command (see :mod:`vivit_tl.cli`)."""

from vivit_tl.cli import main

if __name__ == "__main__":
    main()
