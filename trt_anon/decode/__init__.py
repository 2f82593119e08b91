"""Decode stage: a video file in, batches of RGB uint8 frames (with their timestamps) out."""
from .batch import Batch
from .pyav import PyAVDecoder

__all__ = ["Batch", "PyAVDecoder"]
