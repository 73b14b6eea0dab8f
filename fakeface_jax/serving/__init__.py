"""Serving: a trained run or the packaged model loaded, scored, warned and predicted."""
