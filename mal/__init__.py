"""Mask Auto-Labeler (MAL): box-supervised instance masks with a ViT encoder and a K·V mask decoder."""

__version__ = "0.1.0"
