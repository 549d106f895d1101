"""``python -m omnipickle``: the same as the ``omnipickle`` command."""

import sys

from .cli import main

sys.exit(main())
