from pipemedic.cli import main

raise SystemExit(main())
