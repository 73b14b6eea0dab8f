"""The two classes, named once: label 0 = fake and 1 = real, as in both studies' datasets.

Model outputs follow the same order (logit 0 is fake), so P(fake) is softmax column 0.
"""

FAKE = 0
REAL = 1
NAMES = ("fake", "real")  # Indexed by label.
