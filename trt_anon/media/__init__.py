"""Container-level work (PyAV): opening inputs with clear errors, output paths, fail-closed
writing, copying audio/subtitle packets, and metadata that must not leak."""
from .files import atomic_output, default_output, is_image, resolve_output
from .container import open_input, VideoInfo, Remuxer, clean_metadata

__all__ = ["atomic_output", "default_output", "is_image", "resolve_output", "open_input", "VideoInfo",
           "Remuxer", "clean_metadata"]
