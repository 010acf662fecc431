"""How sure is each result: deviation maps and variants, the uncertain queue (and, planned, sprite
families and stability across seeds). Computed from the artifacts (no torch)."""
