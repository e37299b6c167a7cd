from setuptools import find_packages, setup

setup(
    name="hyperkeras",
    version="0.1.0",
    description="Keras hypernetworks that learn distributions of neural networks",
    packages=find_packages(include=["hyperkeras", "hyperkeras.*"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow==2.21.*",
        "keras>=3",
        "tensorflow-datasets",
        "numpy",
        "absl-py",
        "matplotlib",
        "scipy",
    ],
    extras_require={"test": ["pytest", "hypothesis"]},
)
