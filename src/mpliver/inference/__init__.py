"""The inference product: bundles, slice inference, the predictor, batches and export."""
