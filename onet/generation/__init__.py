"""Generation stage: `onet generate` (batched MISE, marching cubes, simplification, refinement, export).

Public entry points (other stages and the CLI use only these):
    generate(cfg, device=None, input_dir=None, output_dir=None, ...) -> GenerateSummary
    extract_meshes(eval_fn, ...)   the extraction pipeline on any batched field
    extract_batches(batches, ...)  the same over many batches, CPU marching cubes overlapping the device
    encode_shapes(vae, root, items, ...) -> codes   VAE posterior means of dataset shapes
    read_codes(path) -> {name: z}   the codes.npz `onet generate` writes beside latent samples
"""

from onet.generation.extractor import ExtractionBatch, extract_batches, extract_meshes
from onet.generation.posterior import encode_shapes, read_codes
from onet.generation.run import GenerateSummary, generate

__all__ = ["generate", "GenerateSummary", "extract_meshes", "extract_batches", "ExtractionBatch", "encode_shapes",
           "read_codes"]
