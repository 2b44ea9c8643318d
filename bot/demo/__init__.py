"""``afterimage demo``: the 2017 story replayed offline through the real code paths."""
