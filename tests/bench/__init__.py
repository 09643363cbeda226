"""`make bench`: the real stack on free ports, measured beside an empty-handler ceiling."""
