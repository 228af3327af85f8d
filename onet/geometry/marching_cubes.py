"""Marching cubes on a logit grid, returning a closed mesh in world coordinates.

Library choice: skimage.measure.marching_cubes (Lewiner), not PyMCubes.
Measured on this project's grids (sphere / torus fields, 2 CPU cores):
  - speed: 257^3 grid 176 ms vs 376 ms for PyMCubes; 129^3 25 ms vs 48 ms;
  - correctness: both return vertices in index coordinates (axis 0 = x) with
    no half-voxel offset, and both match the analytic sphere to 1e-5 cells;
    with gradient_direction="ascent" and values increasing inward, skimage's
    faces wind outward (positive volume); PyMCubes does too;
  - a logit exactly equal to the level on a grid point makes both emit
    zero-area triangles, and after merging coincident vertices PyMCubes' mesh
    is no longer watertight; skimage's allow_degenerate=False drops those
    triangles and keeps the mesh watertight (~5% slower).

`marching_cubes_warp` runs NVIDIA Warp's marching cubes on the grid's own device
(a CUDA tensor stays on the GPU; Warp also runs on the CPU). It is an optional
extra (`pip install -e .[gpu]`, version pinned in setup.py). Measured against
skimage on sphere and torus grids (tests/geometry/test_marching_cubes.py): the
same vertices (to 2e-7) in another order and as many triangles, wound the other
way round by Warp (flipped here); about a quarter of the triangles are the same,
the others split a cell's polygon along another diagonal (classic case table vs
Lewiner's), which changes volume and area by < 1e-4 relative.

`marching_cubes_torch(_batch)` does the same in torch on the grid's device, a whole
batch per pass, with nothing to install (generation.marching_cubes=torch, auto's
choice on CUDA). Same vertices as skimage on smooth fields (bench_generation.py
--marching-cubes: distance 0 on the chair at 128^3) and, on 2 CPU cores, about half
skimage's time for one 129^3 grid (19 against 35 ms).
"""

from __future__ import annotations

import numpy as np
import torch
from skimage import measure

from onet.geometry.grid import check_box_size, index_to_world

# Far below any logit: padding with it closes the mesh at the box boundary and
# puts the boundary vertices within ~1e-6 cells of the boundary plane.
_PAD_VALUE = -1e6
# Infinite logits (probability exactly 0 or 1) are clipped to this: interpolating towards an
# infinity gives NaN vertices, towards 1e30 the vertex at the finite end (or, between
# +-1e30, the edge's middle)
_FINITE = 1e30


def marching_cubes(values: np.ndarray, level: float, *, box_size: float = 1.1) -> tuple[np.ndarray, np.ndarray]:
    """Extract the level set {values = level} of a grid following onet.geometry.grid.

    values: (X, Y, Z) array, larger inside (logits); axis d has resolution
        shape[d] - 1 and spans [-box_size/2, box_size/2].
    level: iso value in the units of `values` (a logit for logit grids).
    Returns vertices (V, 3) float32 in world coordinates and faces (F, 3) int64
    wound so that normals point outward (positive volume). The mesh is closed:
    the grid is padded with a large negative value, so a surface leaving the
    box is capped on the box boundary. No crossing -> empty arrays.
    """
    values = _check_values(values, level, box_size).cpu().numpy()
    level, box_size = float(level), check_box_size(box_size)

    if not (values > level).any():
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64)

    # pad with a large negative logit so the mesh is closed at the box boundary
    padded = np.pad(values, 1, mode="constant", constant_values=_PAD_VALUE)
    verts, faces, _, _ = measure.marching_cubes(
        padded, level, gradient_direction="ascent", allow_degenerate=False, method="lewiner"
    )
    if len(faces) == 0:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64)
    return _to_world(verts, values.shape, box_size), faces.astype(np.int64)


def marching_cubes_warp(values, level: float, *, box_size: float = 1.1) -> tuple[np.ndarray, np.ndarray]:
    """`marching_cubes` computed by NVIDIA Warp on the device that holds `values`.

    values: (X, Y, Z) torch tensor (CUDA or CPU) or numpy array, as in marching_cubes.
    Returns the same mesh as marching_cubes up to the order of vertices and faces
    (vertices (V, 3) float32 world coordinates, faces (F, 3) int64, outward winding),
    on the host. Raises ImportError naming the extra when warp is not installed.
    """
    wp = _import_warp()
    values = _check_values(values, level, box_size)
    level, box_size = float(level), check_box_size(box_size)
    if not bool((values > level).any()):
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64)

    # pad with a large negative logit so the mesh is closed at the box boundary
    padded = torch.nn.functional.pad(values, (1, 1, 1, 1, 1, 1), value=_PAD_VALUE).contiguous()
    field = wp.from_torch(padded)
    mc = wp.MarchingCubes(*padded.shape)
    if padded.is_cuda:
        with wp.ScopedStream(wp.stream_from_torch(padded.device)):  # ordered after torch's work on the grid
            mc.surface(field=field, threshold=level)
    else:
        mc.surface(field=field, threshold=level)
    verts = mc.verts.numpy()
    faces = mc.indices.numpy().reshape(-1, 3)[:, [0, 2, 1]].astype(np.int64)  # Warp winds inward
    if len(faces) == 0:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64)
    vertices = _to_world(verts, values.shape, box_size)
    # as skimage's allow_degenerate=False: drop triangles with two coincident corners
    # (a value exactly at the level puts several edge vertices on one grid point)
    corners = vertices[faces]  # (F, 3, 3)
    degenerate = ((corners[:, 0] == corners[:, 1]).all(1) | (corners[:, 1] == corners[:, 2]).all(1)
                  | (corners[:, 0] == corners[:, 2]).all(1))
    return vertices, faces[~degenerate]


def _check_values(values, level: float, box_size: float, *, batched: bool = False) -> torch.Tensor:
    """The grid (batched: grids (B, X, Y, Z)) as float32 on its own device; ValueError on a bad grid,
    level or box. One NaN test for a batch: each test waits for the device."""
    if isinstance(values, np.ndarray):
        if not (np.issubdtype(values.dtype, np.floating) or np.issubdtype(values.dtype, np.integer)):
            raise ValueError(f"values must be a real-valued array, got dtype {values.dtype}")
        values = np.ascontiguousarray(values)  # torch takes no negative strides
    values = torch.as_tensor(values)
    grid = tuple(values.shape[1:] if batched else values.shape)
    if batched and values.dim() != 4:
        raise ValueError(f"values must be a batch of 3D grids (B, X, Y, Z), got {tuple(values.shape)}")
    if len(grid) != 3 or min(grid) < 2:
        raise ValueError(f"values must be 3D and at least 2x2x2, got {grid}")
    if values.dtype.is_complex or values.dtype == torch.bool:
        raise ValueError(f"values must be a real-valued array, got dtype {values.dtype}")
    level = float(level)
    if not np.isfinite(level) or level <= _PAD_VALUE:
        raise ValueError(f"level must be finite and above {_PAD_VALUE}, got {level!r}")
    check_box_size(box_size)
    values = values.to(torch.float32)
    if torch.isnan(values).any():
        raise ValueError("values contain NaN")
    return values.clamp(-_FINITE, _FINITE)


def _import_warp():
    try:
        import warp as wp
    except ImportError:
        raise ImportError("generation.marching_cubes=warp needs NVIDIA Warp: pip install -e .[gpu] "
                          "(or use the default generation.marching_cubes=skimage)") from None
    if hasattr(wp.config, "log_level"):
        wp.config.log_level = wp.LOG_WARNING  # no start-up banner in onet's output
    wp.init()  # once; later calls return at once
    return wp


def _to_world(verts: np.ndarray, shape, box_size: float) -> np.ndarray:
    """Index coordinates in the padded grid (V, 3) -> world coordinates (V, 3) float32 of the unpadded one."""
    resolution = np.asarray(shape, dtype=np.float64) - 1
    # undo the padding; clip the ~1e-6 cell overshoot of capping vertices
    index = np.clip(verts.astype(np.float64) - 1.0, 0.0, resolution)
    return index_to_world(index, [int(r) for r in resolution], box_size=box_size).astype(np.float32)


# --- marching cubes in torch: any device torch runs on, nothing to install ---------------------
#
# The case table is built here from the cube's geometry rather than typed in: on each of a
# cell's six faces the crossing edges are joined by segments (on a face whose two inside
# corners are diagonal, each inside corner is cut off by its own segment), each segment is
# directed so that the inside corners lie on its right seen from outside the cell, the
# segments of a cell then close into loops and each loop becomes a triangle fan. The face
# rule depends only on the face's four corners, so the two cells sharing a face cut it the
# same way: the mesh is closed for any grid (tests/geometry/test_marching_cubes.py builds
# all 256 cases and random grids).

_CORNERS = np.array([[c & 1, (c >> 1) & 1, (c >> 2) & 1] for c in range(8)])  # corner c: bits x, y, z
# edge = (first corner, second corner, axis); first has the axis bit 0
_EDGES = [(c, c | (1 << a), a) for a in range(3) for c in range(8) if not (c >> a) & 1]


def _build_case_table() -> tuple[np.ndarray, np.ndarray]:
    """(256, T, 3) local edge ids of each case's triangles (-1 padded) and (256,) triangle counts."""
    mid = np.array([_CORNERS[c0] + 0.5 * np.eye(3)[a] for c0, _, a in _EDGES])
    triangles = []
    for case in range(256):
        inside = [(case >> c) & 1 == 1 for c in range(8)]
        nxt = {}
        for axis in range(3):
            for side in (0, 1):
                normal = (2 * side - 1) * np.eye(3)[axis]
                on_face = [e for e, (c0, _, a) in enumerate(_EDGES) if a != axis and (c0 >> axis) & 1 == side]
                crossing = [e for e in on_face if inside[_EDGES[e][0]] != inside[_EDGES[e][1]]]
                corners_in = [c for c in range(8) if (c >> axis) & 1 == side and inside[c]]
                if len(crossing) == 2:
                    pairs = [(crossing, corners_in[0])]
                elif len(crossing) == 4:  # diagonal inside corners: cut each off on its own
                    pairs = [([e for e in crossing if c in _EDGES[e][:2]], c) for c in corners_in]
                else:
                    pairs = []
                for (e0, e1), corner in pairs:
                    turn = np.cross(normal, mid[e1] - mid[e0])
                    if np.dot(turn, _CORNERS[corner] - mid[e0]) > 0:  # the inside corner on the left
                        e0, e1 = e1, e0
                    if e0 in nxt:
                        raise AssertionError(f"case {case}: edge {e0} starts two segments")
                    nxt[e0] = e1
        tris = []
        while nxt:
            loop = [next(iter(nxt))]
            while nxt[loop[-1]] != loop[0]:
                loop.append(nxt.pop(loop[-1]))
            nxt.pop(loop[-1])
            tris += [(loop[0], loop[k], loop[k + 1]) for k in range(1, len(loop) - 1)]
        triangles.append(tris)
    count = np.array([len(t) for t in triangles])
    table = np.full((256, count.max(), 3), -1, np.int64)
    for case, tris in enumerate(triangles):
        if tris:
            table[case, :len(tris)] = tris
    return table, count


_CASE_TABLE: tuple[torch.Tensor, torch.Tensor] | None = None


def marching_cubes_torch(values, level: float, *, box_size: float = 1.1) -> tuple[np.ndarray, np.ndarray]:
    """`marching_cubes` computed with torch on the device that holds `values`.

    values: (X, Y, Z) torch tensor (CUDA or CPU) or numpy array, as in marching_cubes.
    Returns the same vertices as marching_cubes (vertices (V, 3) float32 world coordinates,
    faces (F, 3) int64, outward winding, on the host) in another order, and as closed a
    surface; a cell's polygon may be split along another diagonal, and a face whose two
    inside corners are diagonal is always cut between them (skimage decides by the bilinear
    saddle), which only matters where the grid is too coarse for the surface.
    """
    return _marching_cubes_torch(_check_values(values, level, box_size)[None], float(level),
                                 check_box_size(box_size))[0]


def marching_cubes_torch_batch(values, level: float, *, box_size: float = 1.1) -> list[tuple[np.ndarray, np.ndarray]]:
    """marching_cubes_torch of each grid of a batch (B, X, Y, Z), in one pass over the batch.

    One pass keeps the number of device calls independent of B (on a GPU each call costs more
    than a 128^3 grid's arithmetic). A value exactly at the level puts the vertex on the grid
    point, shared by every edge that ends there; triangles that collapse there are dropped,
    as in skimage's allow_degenerate=False.
    """
    values = _check_values(values, level, box_size, batched=True)
    return _marching_cubes_torch(values, float(level), check_box_size(box_size))


def _marching_cubes_torch(values: torch.Tensor, level: float, box_size: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """marching_cubes_torch_batch on grids `_check_values` has passed (B, X, Y, Z) float32."""
    global _CASE_TABLE
    B, device = len(values), values.device
    empty = (np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64))
    if B == 0:
        return []
    if _CASE_TABLE is None:
        _CASE_TABLE = tuple(torch.from_numpy(t) for t in _build_case_table())
    table, count = (t.to(device) for t in _CASE_TABLE)

    # pad with a large negative logit so the mesh is closed at the box boundary
    padded = torch.nn.functional.pad(values, (1, 1, 1, 1, 1, 1), value=_PAD_VALUE).contiguous()
    _, X, Y, Z = padded.shape
    inside = (padded > level).to(torch.uint8)
    case = torch.zeros((B, X - 1, Y - 1, Z - 1), dtype=torch.uint8, device=device)
    for c, (dx, dy, dz) in enumerate(_CORNERS.tolist()):
        case |= inside[:, dx:X - 1 + dx, dy:Y - 1 + dy, dz:Z - 1 + dz] << c
    cells = torch.nonzero((case != 0) & (case != 255))  # (A, 4) cells the surface crosses, batch-major
    cell_case = case[tuple(cells.T)].long()
    n_tri = count[cell_case]
    cell_of_tri = torch.repeat_interleave(torch.arange(len(cells), device=device), n_tri)
    slot = torch.arange(len(cell_of_tri), device=device) - (torch.cumsum(n_tri, 0) - n_tri)[cell_of_tri]
    local = table[cell_case[cell_of_tri], slot]  # (F, 3) local edge ids

    # each triangle corner's edge: its first grid point (flat index p0) and axis
    edges = torch.tensor(_EDGES, dtype=torch.long, device=device)
    offsets = torch.nn.functional.pad(torch.from_numpy(_CORNERS).to(device), (1, 0))  # (8, 4): no batch offset
    start = cells[cell_of_tri][:, None, :] + offsets[edges[local, 0]]  # (F, 3, 4)
    axis = edges[local, 2]
    stride = torch.tensor([X * Y * Z, Y * Z, Z, 1], device=device)
    p0 = (start * stride).sum(-1)
    p1 = p0 + stride[1:][axis]
    flat = padded.view(-1)
    v0 = flat[p0]
    t = ((level - v0) / (flat[p1] - v0)).clamp(0, 1)  # the signs differ across the edge
    first = start[..., 1:].to(torch.float32)  # (F, 3, 3) index coordinates of p0
    base = first.gather(2, axis[..., None]).squeeze(2)
    along = base + t  # the vertex's coordinate on its axis
    position = first.scatter(2, axis[..., None], along[..., None])
    # vertex key, sorted batch-major: the grid point where the vertex lies on one (in float32:
    # a crossing within rounding of a grid point is on it, whichever edge it came from),
    # else the edge
    on_p0, on_p1 = along == base, along == base + 1
    key = torch.where(on_p0, 4 * p0 + 3, torch.where(on_p1, 4 * p1 + 3, 4 * p0 + axis))
    # as skimage's allow_degenerate=False: no zero-area triangles (two corners on one grid
    # point, or three in a row where infinite logits put every vertex on a grid point)
    keep = torch.linalg.cross(position[:, 1] - position[:, 0], position[:, 2] - position[:, 0]).ne(0).any(dim=1)
    key, position = key[keep], position[keep]
    keys, faces = torch.unique(key.view(-1), return_inverse=True)  # only vertices of kept triangles
    faces = faces.view(-1, 3)
    vertices = torch.empty((len(keys), 3), dtype=torch.float32, device=device)
    vertices[faces.view(-1)] = position.view(-1, 3)  # equal keys, equal positions
    n_faces = torch.bincount(cells[cell_of_tri[keep], 0], minlength=B)
    n_vertices = torch.bincount(keys // (4 * X * Y * Z), minlength=B)

    vertices, faces = vertices.cpu().numpy(), faces.cpu().numpy()
    n_faces, n_vertices = n_faces.tolist(), n_vertices.tolist()
    meshes, v_start, f_start = [], 0, 0
    for b in range(B):
        v_end, f_end = v_start + n_vertices[b], f_start + n_faces[b]
        if f_end == f_start:
            meshes.append(empty)
        else:
            meshes.append((_to_world(vertices[v_start:v_end], values.shape[1:], box_size),
                           faces[f_start:f_end] - v_start))
        v_start, f_start = v_end, f_end
    return meshes
