"""``python -m tilecast``: the same command line as the ``tilecast`` script."""

import sys

from tilecast.cli import main

sys.exit(main())
