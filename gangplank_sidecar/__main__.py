from gangplank_sidecar.cli import main

raise SystemExit(main())
