"""autobin: turn PyTorch vision models into AdaBin binary neural networks."""

__version__ = "0.1.0"
