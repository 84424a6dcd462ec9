"""The run history: its database (db) and the `gangplank-runs` command (cli)."""
