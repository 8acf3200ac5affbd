"""Metrics of docs/method.md §5 (metrics, lesions), their aggregation over cases (aggregate), the paper-style
tables (tables) and `mpliver evaluate` on folders of label maps (evaluate)."""
