"""Batched generated-weight convolution: K sampled networks in one call.

``batched_conv2d`` dispatches to the compiled ``HyperKeras>BatchedConv2D`` op
when its library is loaded and to the pure-TF fallback otherwise.
"""

from hyperkeras.ops._dispatch import active_path
from hyperkeras.ops._dispatch import batched_conv2d
from hyperkeras.ops._dispatch import conv_output_size
from hyperkeras.ops._dispatch import force_path

__all__ = ["batched_conv2d", "active_path", "conv_output_size", "force_path"]
