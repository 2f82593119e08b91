"""Encode stage: redacted RGB frames in, packets muxed into the output container."""
from .pyav import SOFTWARE_CODECS, PyAVEncoder

__all__ = ["PyAVEncoder", "SOFTWARE_CODECS"]
