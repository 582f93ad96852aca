"""What the reference shares with the rest of the project but nobody needs to read to understand RCAN: the
command lines' exit-code contract (cli) and atomic file writes (files)."""
