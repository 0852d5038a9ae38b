"""nemotron: Nemotron 3 training recipes end to end."""
__version__ = "0.1.0"
