"""Training stage: `onet train` (trainer loop, loss, distributed setup; the latent GAN).

Public entry points (other stages and the CLI use only these):
    train(cfg, device=None, progress=True) -> TrainResult
    make_optimizer(model, lr, device) -> the Adam training uses (e.g. to time steps as training runs them)
    processes_for(cfg, device_type) -> how many processes `onet train` of cfg starts (train.cpu_processes)
    launch(argv, processes) -> runs `onet ARGV` as that many data-parallel processes, returns the exit code
"""

from onet.models.latent import is_latent_gan
from onet.training.latent_gan import train_latent_gan
from onet.training.launch import launch, processes_for
from onet.training.trainer import TrainResult, make_optimizer
from onet.training.trainer import train as train_occupancy


def train(cfg: dict, *, device: str | None = None, progress: bool = True, log=print) -> TrainResult:
    """Train what `cfg` describes into cfg['out_dir'], resuming from its model.pt.

    The one dispatch of the stage: a config with latent_gan.vae_dir trains a latent GAN
    on that VAE's shape codes (onet.training.latent_gan); any other trains an occupancy
    network (onet.training.trainer).
    """
    if is_latent_gan(cfg):
        return train_latent_gan(cfg, device=device, progress=progress, log=log)
    return train_occupancy(cfg, device=device, progress=progress, log=log)


__all__ = ["train", "TrainResult", "make_optimizer", "processes_for", "launch"]
