"""The current state of each run, built from parsed items."""
