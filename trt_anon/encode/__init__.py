"""Encode stage: redacted RGB frames in, packets muxed into the output container."""
from .pyav import SOFTWARE_CODECS, PyAVEncoder, choose_codec

__all__ = ["PyAVEncoder", "SOFTWARE_CODECS", "choose_codec"]
