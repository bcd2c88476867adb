import sys

from cosalign.cli import main

sys.exit(main())
