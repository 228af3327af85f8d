"""Training: trainer loop, checkpoints, distributed setup."""

from onet.training.trainer import TrainResult, train

__all__ = ["train", "TrainResult"]
