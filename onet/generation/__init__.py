"""Generation stage: `onet generate` (batched MISE, marching cubes, simplification, refinement, export).

Public entry points (other stages and the CLI use only these):
    generate(cfg, device=None, input_dir=None, output_dir=None, ...) -> GenerateSummary
    extract_meshes(eval_fn, ...)   the extraction pipeline on any batched field
"""

from onet.generation.extractor import extract_meshes
from onet.generation.run import GenerateSummary, generate

__all__ = ["generate", "GenerateSummary", "extract_meshes"]
