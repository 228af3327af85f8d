"""onet: Occupancy Networks as a command-line 3D reconstruction toolkit."""

__version__ = "0.1.0"
