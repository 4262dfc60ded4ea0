import sys

from solforge.cli import main

sys.exit(main())
