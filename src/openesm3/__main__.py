import sys

from openesm3.cli.main import main

sys.exit(main())
