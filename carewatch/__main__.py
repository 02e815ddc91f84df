from carewatch.cli import main

raise SystemExit(main())
