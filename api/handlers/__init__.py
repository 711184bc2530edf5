"""The work behind each endpoint, with no Flask in sight: typed, testable functions."""
