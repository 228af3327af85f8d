"""The mesh formats onet reads: one list for the readers (mesh_io, mesh_files) and the listers
(preprocess, evaluation). A module of its own without trimesh, so that importing training or
generation does not load trimesh until a mesh is read."""

# .dae through pycollada; glTF with separate buffers and COLLADA through mesh_io's trimesh loader
MESH_EXTENSIONS = (".obj", ".off", ".ply", ".stl", ".glb", ".gltf", ".dae")
