"""Encode stage: redacted RGB frames in, packets muxed into the output container."""
from .pyav import PyAVEncoder

__all__ = ["PyAVEncoder"]
