"""What a model predicts: its output kind, and the dataset fields it trains on.

Every model class names its kind in a class attribute `output_kind`, and
provides the same three methods, so the trainer needs no case analysis:

    compute_loss(batch) -> (loss scalar, {name: float or detached 0-d tensor})  training
    validation_metrics(batch, threshold, points_chunk=None, encode_points=None) -> {name: (B,) tensor}
                                                                validation, per object
                                                                (encode_points: data.points_subsample,
                                                                for a VAE's latent encoder)
    val_metrics: tuple of the names validation_metrics returns

`batch` is the collated dict of `onet.data.dataset.ShapeDataset` items on the
model's device: "points" (B, T, 3), "points.occ" (B, T), "inputs", plus the
fields of `TARGETS[kind]`.

Generation and evaluation dispatch on the kind, each in one place:

    field   an occupancy field f(p, c) -> logits (Occupancy Network):
            MISE + marching cubes at test.threshold
    voxels  a 32^3 occupancy grid (3D-R2N2): marching cubes on the grid's
            probabilities at test.threshold
    points  a fixed-size point set (PSGN): written as a vertex-only file,
            scored on the surface metrics only (no inside, no normals)
"""

from __future__ import annotations

FIELD = "field"
VOXELS = "voxels"
POINTS = "points"
OUTPUT_KINDS = (FIELD, VOXELS, POINTS)

# dataset fields each kind trains on, beyond the occupancy points every item has:
# "voxels" = the 32^3 grid of data.voxels_file, "pointcloud" = data.pointcloud_target_n
# surface points of data.pointcloud_file
TARGETS: dict[str, tuple[str, ...]] = {
    FIELD: (),
    VOXELS: ("voxels",),
    POINTS: ("pointcloud",),
}
