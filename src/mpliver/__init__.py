"""mpliver: liver tumour segmentation in multi-phase CT (research software, not for clinical use)."""

from mpliver._version import __version__

__all__ = ["__version__", "predict"]


def predict(*args, **kwargs):
    """`mpliver.predict(bundle, {"PV": path, "ART": path}, ...)`: see `mpliver.inference.predict.predict`.

    Imported lazily so that `import mpliver` stays light (no torch until a prediction is asked for).
    """
    from mpliver.inference.predict import predict as _predict  # lazy: `import mpliver` stays light

    return _predict(*args, **kwargs)
