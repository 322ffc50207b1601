"""macvland: keep the kernel's macvlan interfaces matching a declarative spec."""

__version__ = "0.1.0"
