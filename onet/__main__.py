from onet.cli import main

raise SystemExit(main())
