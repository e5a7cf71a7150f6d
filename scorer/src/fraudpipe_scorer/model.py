"""Model loading lives in libs/common (`fraudpipe_common.inference`), shared with the API."""

from fraudpipe_common.inference import LoadedModel, load, prepare

__all__ = ["LoadedModel", "load", "prepare"]
