from calf.cli import main

raise SystemExit(main())
