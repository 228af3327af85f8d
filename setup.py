import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class BuildWithConfigs(build_py):
    """Copy the top-level configs/ (the one copy in the repository) into the built package as onet/configs.

    A source checkout reads configs/ directly; an installed wheel has no checkout,
    so it carries the defaults and presets inside the package (onet.config.CONFIG_DIR).
    """

    def run(self):
        super().run()
        target = Path(self.build_lib) / "onet" / "configs"
        if target.exists():
            shutil.rmtree(target)
        for src in sorted((HERE / "configs").rglob("*.yaml")):
            dst = target / src.relative_to(HERE / "configs")
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)


setup(
    name="onet",
    version="0.1.0",
    description="Occupancy Networks as a command-line 3D reconstruction toolkit",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["onet", "onet.*"]),
    # C sources compiled on first use where a compiler exists (onet/utils/native.py)
    package_data={"onet.models": ["*.c"]},
    cmdclass={"build_py": BuildWithConfigs},
    install_requires=[
        "torch>=2.4",  # fused Adam on the CPU, torch.amp.custom_fwd(device_type=), torch.get_autocast_dtype
        "numpy",
        "scipy",
        "trimesh>=4.0",
        "PyMCubes",
        "scikit-image",
        "pykdtree",
        "PyYAML",
        "tqdm",
        "Pillow",
        "fast-simplification",
        "embreex",
        "manifold3d",
        "rtree",
        # COLLADA (.dae) meshes in `onet preprocess`: trimesh reads them through it (pure Python)
        "pycollada",
        # 3DS, AC3D, FBX, Blender, DirectX .x, LightWave ... (geometry/assimp_reader.py): assimp with its
        # library bundled in the wheel; wheels exist for CPython 3.10-3.13 (elsewhere those formats are
        # reported as unread, with this package named)
        'assimp-py>=1.1; python_version >= "3.10" and python_version < "3.14"',
        # glTF with Draco-compressed geometry (KHR_draco_mesh_compression, common in web exports):
        # trimesh decodes it through DracoPy, and without it reads every vertex as 0
        "DracoPy",
    ],
    extras_require={
        "test": ["pytest", "pytest-xdist"],
        "full": ["torchvision", "tensorboard"],
        # generation.marching_cubes=warp (GPU marching cubes; also runs on CPUs). Pinned to the
        # version scripts/gpu_check.sh verifies: 1.18+ wheels need CUDA 13 drivers (R580+).
        "gpu": ["warp-lang==1.17.0"],
    },
    entry_points={"console_scripts": ["onet=onet.cli:entry"]},
)
