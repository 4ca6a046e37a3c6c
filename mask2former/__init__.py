"""Mask2Former (TAO's seed skill): instance segmentation on transformers' implementation, trained, evaluated
and used from a TAO-style spec, and offered to automl as a second tunable model (mask2former/tunable.py)."""
