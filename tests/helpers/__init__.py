"""Shared test helpers: tiny stand-in models and data, DICOM quirks, a faulty file system.

`tests/` is on the path through pytest's `pythonpath` setting, so tests import `helpers.<module>`.
"""
