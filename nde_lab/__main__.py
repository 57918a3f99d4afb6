"""`python -m nde_lab ...` is the `nde-lab` command."""

import sys

from nde_lab.commands import main

sys.exit(main())
