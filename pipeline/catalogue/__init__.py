"""From clusters to a catalogue: the scholar's curation (names, merges, drops), banks applied to
new collections, and publication as IIIF annotations. Reads artifacts only (no torch)."""
