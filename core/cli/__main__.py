"""`python -m kamicore.cli`"""

import sys

from . import main

sys.exit(main())
