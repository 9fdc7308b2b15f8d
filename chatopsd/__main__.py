from chatopsd.cli import main

raise SystemExit(main())
