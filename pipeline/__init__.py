"""sprites: learn sprites (prototype images with transparency) that explain an image collection."""

__version__ = "0.1.0"
