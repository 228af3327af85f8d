"""Training stage: `onet train` (trainer loop, loss, distributed setup).

Public entry points (other stages and the CLI use only these):
    train(cfg, device=None, progress=True) -> TrainResult
"""

from onet.training.trainer import TrainResult, train

__all__ = ["train", "TrainResult"]
