__version__ = "0.1.0"


def predict(*args, **kwargs):
    """`mpliver.predict(bundle, {"PV": path, "ART": path}, ...)`: see `mpliver.inference.predict.predict`.

    Imported lazily so that `import mpliver` stays light (no torch until a prediction is asked for).
    """
    from mpliver.inference.predict import predict as _predict

    return _predict(*args, **kwargs)
