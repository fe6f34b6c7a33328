"""Installable package for mannequin: frozen-scene videos to depth labels, on the CPU."""
from setuptools import find_packages, setup

setup(
    name="mannequin",
    version="0.1.0",
    description="Frozen-scene (Mannequin-Challenge) videos to multi-view depth labels on the CPU",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["mannequin", "mannequin.*"]),
    install_requires=[
        "numpy>=1.24,<3",
        "scipy>=1.10,<2",
        "pycolmap>=4.0,<5",
        "open3d>=0.19,<0.21",
        "numba>=0.59,<1",
        "imageio>=2.31,<3",
        "imageio-ffmpeg>=0.4.9,<1",
        "tqdm>=4.60,<5",
        "matplotlib>=3.7,<4",
    ],
    extras_require={
        "dev": ["pytest>=7", "hypothesis>=6.80", "ruff>=0.4", "pytest-timeout>=2", "pytest-xdist>=3", "mypy>=1.8", "pre-commit>=3"],
        "batch": ["dask[distributed]>=2024.1"],
        "bench": ["opencv-python-headless>=4.8,<5", "matplotlib>=3.7"],
    },
    entry_points={"console_scripts": ["mannequin=mannequin.cli:main"]},
)
