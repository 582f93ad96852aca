"""What the explanation report measures on a run (evidence) and draws (figures)."""
