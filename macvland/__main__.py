import sys

from macvland.cli import main

sys.exit(main())
