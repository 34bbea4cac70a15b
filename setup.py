"""The C part of the package (everything else is in pyproject.toml).

``tunnelhound.normalize._kernels``: per-row normalize and NDJSON work (bench/README.md says
why it is C). Plain C against the CPython API and the buffer protocol: gcc and the Python
headers build it, nothing else (xxhash.h is vendored, SHA-1 is in the file).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "tunnelhound.normalize._kernels",
            sources=["sidecar/tunnelhound/normalize/native/kernels.c"],
            depends=["sidecar/tunnelhound/normalize/native/xxhash.h"],
            extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ],
)
