"""Model blocks built as rlxpy graphs."""
