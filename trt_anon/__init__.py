"""trt_anon: anonymize faces (and eyes) in video, on NVIDIA GPUs or on the CPU."""
from . import live  # trt_anon.live.stream: a camera or network stream, as it plays
from .api import process
from .config import Config
from .errors import AnonError, BackendError, ConfigError, DetectorError, InputError, OutputError
from .frames import Anonymizer, Ready
from .report import Report
from .scale import process_many  # imports Ray only when called

__version__ = "0.1.0"
__all__ = ["process", "process_many", "live", "Anonymizer", "Ready", "Config", "Report", "AnonError", "BackendError",
           "ConfigError", "DetectorError", "InputError", "OutputError", "__version__"]
