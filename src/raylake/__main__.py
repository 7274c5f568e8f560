import sys

from raylake.cli import main

sys.exit(main())
