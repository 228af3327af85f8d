from setuptools import find_packages, setup

setup(
    name="onet",
    version="0.1.0",
    description="Occupancy Networks as a command-line 3D reconstruction toolkit",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["onet", "onet.*"]),
    package_data={"onet": ["configs/*.yaml"]},
    include_package_data=True,
    install_requires=[
        "torch>=2.0",
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
    ],
    extras_require={
        "test": ["pytest"],
        "full": ["torchvision", "tensorboard"],
    },
    entry_points={"console_scripts": ["onet=onet.cli:main"]},
)
