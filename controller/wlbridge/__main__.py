"""`python -m wlbridge ...` is the `wlbridge` command."""

import sys

from wlbridge.cli import main

sys.exit(main())
