import sys

from fraudpipe_scorer.cli import main

sys.exit(main())
