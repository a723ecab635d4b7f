import sys

from evalpipe.cli import main

sys.exit(main())
