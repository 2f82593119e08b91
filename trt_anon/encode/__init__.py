"""Encode stage: redacted RGB frames in, packets muxed into the output container."""
from .codecs import CODECS, Codec, choose_codec
from .pyav import PyAVEncoder

__all__ = ["CODECS", "Codec", "PyAVEncoder", "choose_codec"]
