"""Datasets: the on-disk formats (`formats`), the loader (`dataset`), the built-in synthetic shapes (`synthetic`)."""

# The built-in dataset (`onet demo`, configs/demo.yaml): 90 objects per class, of which 6 are
# validation and 12 test (the split sizes of the earlier 60-object dataset) and 72 train. More
# training shapes in the same 2400 iterations, scored on 240 held-out objects (point IoU at the
# best tau, one training run each): 42 per class 0.718, 72 per class 0.729, 102 per class 0.728.
BUILTIN_OBJECTS_PER_CLASS = 90
BUILTIN_SPLIT_FRACTIONS = (0.8, 0.0667, 0.1333)
