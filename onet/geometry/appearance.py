"""Surface colours of a triangle mesh: material colours, vertex colours, texture maps.

One model covers what mesh files carry. The colour of a surface point on face f
with barycentric coordinates (b0, b1, b2) is

    face_colors[f] * (sum_k b_k * vertex_colors[faces[f, k]]) * texture(uv)

where uv = sum_k b_k * uv[faces[f, k]] and texture is the map
textures[face_texture[f]] (a factor of 1 where a face has none, and where
there are no vertex colours). Colours are RGB in [0, 1], in the file's colour
space (sRGB in practice), and alpha is ignored: the renderer treats every
surface as opaque.

UV convention (OBJ, trimesh; glTF files are converted on loading): u runs
left to right and v bottom to top over the image, both in [0, 1) with
wrap-around (repeat) outside; texel [row, col] of an (H, W) image is centred
at (u, v) = ((col + 0.5) / W, 1 - (row + 0.5) / H). Lookups are bilinear in
a mip pyramid (2x2 box-filtered levels) whose level is chosen per face from
the ratio of its texel area to its area on screen, so a large texture seen
small is averaged rather than aliased.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

__all__ = ["Appearance", "DEFAULT_COLOR", "sample_texture"]

# the colour of surfaces without any material: neutral grey-blue
DEFAULT_COLOR = np.array([0.62, 0.67, 0.78], dtype=np.float32)


@dataclass(frozen=True, eq=False)
class Appearance:
    """Colours of a mesh with V vertices and F faces (see the module docstring).

    Attributes:
        face_colors: (F, 3) float32 in [0, 1], material colour per face.
        vertex_colors: (V, 3) float32 in [0, 1], or None (all ones).
        uv: (V, 2) float32 texture coordinates, or None (no texture).
        face_texture: (F,) int32 index into `textures`, -1 for untextured
            faces; None when there are no textures.
        textures: RGB images, uint8 (H, W, 3) each.
    """

    face_colors: np.ndarray
    vertex_colors: np.ndarray | None = None
    uv: np.ndarray | None = None
    face_texture: np.ndarray | None = None
    textures: tuple[np.ndarray, ...] = ()

    def __post_init__(self) -> None:
        fc = np.asarray(self.face_colors)
        if fc.ndim != 2 or fc.shape[1] != 3:
            raise ValueError(f"face_colors must have shape (F, 3), got {fc.shape}")
        object.__setattr__(self, "face_colors", np.clip(fc, 0, 1).astype(np.float32))
        if self.vertex_colors is not None:
            vc = np.asarray(self.vertex_colors)
            if vc.ndim != 2 or vc.shape[1] != 3:
                raise ValueError(f"vertex_colors must have shape (V, 3), got {vc.shape}")
            object.__setattr__(self, "vertex_colors", np.clip(vc, 0, 1).astype(np.float32))
        if (self.uv is None) != (self.face_texture is None):
            raise ValueError("uv and face_texture go together: give both or neither")
        textures = tuple(np.asarray(t) for t in self.textures)
        for i, t in enumerate(textures):
            if t.ndim != 3 or t.shape[2] != 3 or t.dtype != np.uint8 or min(t.shape[:2]) < 1:
                raise ValueError(f"textures[{i}] must be a uint8 (H, W, 3) image, got {t.dtype} {t.shape}")
        object.__setattr__(self, "textures", textures)
        if self.uv is not None:
            uv = np.asarray(self.uv, dtype=np.float32)
            if uv.ndim != 2 or uv.shape[1] != 2:
                raise ValueError(f"uv must have shape (V, 2), got {uv.shape}")
            ft = np.asarray(self.face_texture).astype(np.int32)
            if ft.shape != (len(fc),):
                raise ValueError(f"face_texture must have shape ({len(fc)},) like face_colors, got {ft.shape}")
            if ft.size and (ft.min() < -1 or ft.max() >= len(textures)):
                raise ValueError(f"face_texture values must lie in [-1, {len(textures)}), got [{ft.min()}, {ft.max()}]")
            if self.vertex_colors is not None and len(uv) != len(self.vertex_colors):
                raise ValueError(f"uv ({len(uv)}) and vertex_colors ({len(self.vertex_colors)}) must have one row per vertex")
            object.__setattr__(self, "uv", np.nan_to_num(uv, nan=0.0, posinf=0.0, neginf=0.0))
            object.__setattr__(self, "face_texture", ft)

    @property
    def n_faces(self) -> int:
        return len(self.face_colors)

    @property
    def n_vertices(self) -> int | None:
        """Vertices the per-vertex arrays describe (None when there are none)."""
        for a in (self.vertex_colors, self.uv):
            if a is not None:
                return len(a)
        return None

    def check_mesh(self, n_vertices: int, n_faces: int) -> None:
        """Raise ValueError unless this describes a mesh with these counts."""
        if self.n_faces != n_faces:
            raise ValueError(f"appearance has {self.n_faces} face colours for a mesh with {n_faces} faces")
        if self.n_vertices is not None and self.n_vertices != n_vertices:
            raise ValueError(f"appearance has {self.n_vertices} per-vertex rows for a mesh with {n_vertices} vertices")

    def subset(self, face_index: np.ndarray, vertex_index: np.ndarray) -> "Appearance":
        """The appearance of a sub-mesh keeping faces `face_index` and vertices `vertex_index` (in order)."""
        keep = lambda a: None if a is None else a[vertex_index]  # noqa: E731
        return Appearance(
            face_colors=self.face_colors[face_index],
            vertex_colors=keep(self.vertex_colors),
            uv=keep(self.uv),
            face_texture=None if self.face_texture is None else self.face_texture[face_index],
            textures=self.textures,
        )

    def colors_at(self, faces: np.ndarray, face_index: np.ndarray, barycentric: np.ndarray, *,
                  screen_area: np.ndarray | None = None) -> np.ndarray:
        """Colours of surface points.

        Args:
            faces: (F, 3) int, the mesh's faces.
            face_index: (H,) int, the face each point lies on.
            barycentric: (H, 3) float, its barycentric coordinates on that face.
            screen_area: (H,) float, area in pixels of the point's face as seen,
                to pick the mip level of its texture; None reads full resolution.
        Returns:
            (H, 3) float32 RGB in [0, 1].
        """
        face_index = np.asarray(face_index, dtype=np.int64)
        bary = np.asarray(barycentric, dtype=np.float32)
        colors = self.face_colors[face_index].copy()
        if len(face_index) == 0:
            return colors
        corners = np.asarray(faces)[face_index]  # (H, 3) vertex ids
        if self.vertex_colors is not None:
            colors *= np.einsum("hk,hkc->hc", bary, self.vertex_colors[corners])
        if self.uv is not None:
            tex = self.face_texture[face_index]
            uv = np.einsum("hk,hkc->hc", bary, self.uv[corners])  # (H, 2)
            level = np.zeros(len(face_index), dtype=np.int64)
            if screen_area is not None:
                # texels per pixel, squared: the face's texel area over its screen area
                t_uv = self.uv[corners].astype(np.float64)  # (H, 3, 2)
                e1, e2 = t_uv[:, 1] - t_uv[:, 0], t_uv[:, 2] - t_uv[:, 0]
                uv_area = 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
                ratio = np.where(tex >= 0, uv_area * self._texture_texels[np.maximum(tex, 0)], 0.0)
                ratio = ratio / np.maximum(np.asarray(screen_area, dtype=np.float64), 1e-12)
                with np.errstate(divide="ignore"):
                    level = np.round(0.5 * np.log2(np.maximum(ratio, 1.0))).astype(np.int64)
            for t in np.unique(tex[tex >= 0]):
                pyramid = self._pyramid(int(t))
                on_t = tex == t
                lv = np.minimum(level[on_t], len(pyramid) - 1)
                sampled = np.empty((int(on_t.sum()), 3), dtype=np.float32)
                for k in np.unique(lv):
                    at = lv == k
                    sampled[at] = sample_texture(pyramid[k], uv[on_t][at])
                colors[on_t] *= sampled
        return colors

    # ---- cached helpers (the dataclass is frozen; cached_property writes __dict__ directly)

    @functools.cached_property
    def _texture_texels(self) -> np.ndarray:
        return np.array([t.shape[0] * t.shape[1] for t in self.textures] or [0], dtype=np.float64)

    def _pyramid(self, t: int) -> list[np.ndarray]:
        cache = self.__dict__.setdefault("_pyramids", {})
        if t not in cache:
            cache[t] = mip_pyramid(self.textures[t])
        return cache[t]


def mip_pyramid(image: np.ndarray) -> list[np.ndarray]:
    """[image, image / 2, ... 1 pixel wide]: each level the 2x2 box average of the one before
    (an odd last row or column is dropped), uint8 (h, w, 3)."""
    levels = [np.ascontiguousarray(image, dtype=np.uint8)]
    while min(levels[-1].shape[:2]) > 1:
        a = levels[-1].astype(np.float32)
        h, w = (a.shape[0] // 2) * 2, (a.shape[1] // 2) * 2
        a = a[:h, :w]
        down = 0.25 * (a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2])
        levels.append(np.round(down).astype(np.uint8))
    return levels


def sample_texture(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup with wrap-around of an (H, W, 3) uint8 image at (N, 2) uv; returns (N, 3) float32 in [0, 1]."""
    image = np.asarray(image)
    uv = np.asarray(uv, dtype=np.float64)
    h, w = image.shape[:2]
    # continuous pixel coordinates with texel centres at integers
    x = uv[:, 0] * w - 0.5
    y = (1.0 - uv[:, 1]) * h - 0.5
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0)[:, None].astype(np.float32), (y - y0)[:, None].astype(np.float32)
    c0, r0 = x0.astype(np.int64) % w, y0.astype(np.int64) % h
    c1, r1 = (c0 + 1) % w, (r0 + 1) % h
    def at(r, c):  # gather first: converting the whole image would cost more than the lookups
        return image[r, c].astype(np.float32)

    top = at(r0, c0) * (1 - fx) + at(r0, c1) * fx
    bottom = at(r1, c0) * (1 - fx) + at(r1, c1) * fx
    return (top * (1 - fy) + bottom * fy) / 255.0
