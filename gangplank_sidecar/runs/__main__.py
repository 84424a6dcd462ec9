from gangplank_sidecar.runs.cli import main

raise SystemExit(main())
