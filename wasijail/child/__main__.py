"""`python -m wasijail.child FD`: run one module, brokered over socket FD."""

import sys

from .runner import child_main

child_main(int(sys.argv[1]))
