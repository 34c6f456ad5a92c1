"""control-center: the province's public-service operations wall."""

__version__ = "0.1.0"
