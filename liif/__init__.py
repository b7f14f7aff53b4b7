"""LIIF: Local Implicit Image Function for arbitrary-scale super-resolution, on PyTorch and Jittor."""
from liif.inference.api import Model, build_model, create_model, list_models, load_model

__version__ = "0.1.0"
__all__ = ["Model", "build_model", "create_model", "list_models", "load_model", "__version__"]
