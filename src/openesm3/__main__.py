"""``python -m openesm3``: the ``openesm3`` command."""

import sys

from openesm3.cli.main import main

if __name__ == "__main__":  # importing the module (pdoc, doctest collection) must not run the command
    sys.exit(main())
