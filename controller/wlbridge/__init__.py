"""wlbridge: bridge virtual machines and containers onto a Wi-Fi LAN with Open vSwitch."""

__version__ = "0.1.0"
