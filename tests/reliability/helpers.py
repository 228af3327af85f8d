"""Helpers for the reliability suite: the CLI run in-process, tiny model settings."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

from onet.cli import main

# Shrinks every model to seconds of CPU work; generation on a coarse dense grid.
SMALL = [
    "device=cpu", "data.points_subsample=64", "data.points_iou_subsample=500",
    "model.decoder_kwargs={hidden_size: 16, n_blocks: 1}", "model.c_dim=16",
    "train.batch_size=4", "train.max_iters=2", "train.validate_every=2", "train.checkpoint_every=2",
    "train.print_every=1", "train.max_time=null", "train.num_workers=0",
    "generation.resolution_0=8", "generation.upsampling_steps=1",
    "train.precision=fp32", "generation.precision=fp32",  # demo.yaml's auto, pinned: the same on every CPU
]
MODEL_CONFIGS = {
    "img": ("demo.yaml", ["data.img_size=32", "model.encoder_kwargs={width: 8, pretrained: false}"]),
    "pointcloud": ("pointcloud.yaml", ["model.encoder_kwargs={hidden_dim: 32}", "data.pointcloud_n=50"]),
    "voxels": ("voxels.yaml", []),
}


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def errors(self) -> list[str]:
        """The `onet VERB: error: ...` lines on stderr."""
        return [line for line in self.err.splitlines() if ": error: " in line]


def run_cli(*args) -> CliResult:
    """`onet ARGS` in this process (no interpreter start-up): exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse usage errors
            code = exc.code
    return CliResult(code, out.getvalue(), err.getvalue())


def assert_one_clear_error(res: CliResult, code: int, *fragments: str) -> str:
    """Exit `code`, exactly one error line containing every fragment, no traceback."""
    assert res.code == code, (res.code, res.out, res.err)
    assert "Traceback" not in res.err + res.out
    lines = res.errors()
    assert len(lines) == 1, res.err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]
