"""Where lines come from: stdin, followed files, a wrapped command. Each echoes its own bytes."""
