from minilake.cli import main

raise SystemExit(main())
