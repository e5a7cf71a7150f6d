from fraudpipe_operator.cli import main

raise SystemExit(main())
