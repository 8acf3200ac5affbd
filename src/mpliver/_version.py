"""The package version: one home, read by the root package, bundles, caches and run records."""

__version__ = "0.1.0"
