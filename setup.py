"""The compiled part of podcap: everything else is in pyproject.toml.

The flows stage's per-packet passes (podcap/flows/_flowpass.c, a Python module through
_flowpass_module.c, which checks every argument) are optional: without a C compiler the build
goes on and podcap uses the numpy code that does the same, slower.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "podcap.flows._flowpass",
            ["podcap/flows/_flowpass.c", "podcap/flows/_flowpass_module.c"],
            depends=["podcap/flows/_flowpass.h"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
