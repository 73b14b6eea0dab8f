"""Data: datasets, decoding, selection, mixtures, faces, preprocessing and pseudo-fakes."""
