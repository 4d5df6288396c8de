"""The compiled part of podcap: everything else is in pyproject.toml.

The flows report's per-packet passes (podcap/reports/_flowpass.c) are optional: without a C
compiler the build goes on and podcap uses the numpy code that does the same, slower.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "podcap.reports._flowpass",
            ["podcap/reports/_flowpass.c"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
