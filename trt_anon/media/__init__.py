"""Container-level work (PyAV): opening inputs with clear errors, output paths, fail-closed
writing, copying audio/subtitle packets, and metadata that must not leak; photos (Pillow) in stills."""
from . import stills
from .container import Remuxer, VideoInfo, clean_metadata, open_input
from .files import atomic_output, default_output, is_image, resolve_output

__all__ = ["stills", "atomic_output", "default_output", "is_image", "resolve_output", "open_input", "VideoInfo",
           "Remuxer", "clean_metadata"]
