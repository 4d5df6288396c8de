"""podcap: packet capture and analysis for Kubernetes networking.

The library comes first; the ``podcap`` command is a thin layer over it. Heavy modules
(pandas, kubernetes, pyshark) are imported only by the functions that need them, so that
``import podcap`` and ``podcap --help`` stay fast.
"""

from podcap.errors import PodcapError
from podcap.version import __version__

__all__ = ["PodcapError", "__version__"]
