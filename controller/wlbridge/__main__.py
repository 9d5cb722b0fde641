"""`python -m wlbridge ...` is the `wlbridge` command."""

import sys

from wlbridge.cli.main import main

sys.exit(main())
