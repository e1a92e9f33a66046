"""Holdout lift: did the campaign change what its recipients did? See ``compute.py``."""
