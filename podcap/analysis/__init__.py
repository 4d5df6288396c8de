"""Analysis: decoded packets -> filter -> flows -> reports, in memory or bucket by bucket."""
