import sys

from fraudpipe_api.cli import main

sys.exit(main())
