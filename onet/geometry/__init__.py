"""Geometry: pure functions on numpy/torch arrays, shared by every stage.

The floor under the stages (it imports nothing of onet but `onet.utils`):

- `grid`            the one grid-index <-> world-coordinate convention
- `marching_cubes`  iso-surface of a grid, closed, in world coordinates
- `inside`          inside test (ray parity with a majority vote)
- `iou`             occupancy IoU (numpy) and batched IoU at many thresholds (torch)
- `sampling`        uniform points in the box, area-uniform surface samples
- `voxelize`        mesh -> voxel grid, voxel grid -> mesh
- `normalize`       bounding-box normalisation (centre 0, longest edge 1)
- `render`          ray-cast renderings, depth maps and cameras (no OpenGL)
- `appearance`      surface colours: material, vertex and face colours, texture maps
- `mesh`            validation of mesh and point arrays
- `mesh_io`         loading raw meshes of any common format, cleaned
- `mesh_files`      onet's atomic PLY/OBJ/OFF/GLB/STL writer and reader
"""
