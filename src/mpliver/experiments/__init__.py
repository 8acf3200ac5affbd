"""Research workflows: cross-validation, experiment sets, seed repeats, reports and packaging."""
