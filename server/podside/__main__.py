"""`python -m podside` is the `podside` command."""

import sys

from podside.cli import main

sys.exit(main())
