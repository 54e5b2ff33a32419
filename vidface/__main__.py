from vidface.cli import main

raise SystemExit(main())
