"""The compiled part of podcap: everything else is in pyproject.toml.

The flows stage's passes in C, the extension module podcap.flows._flowpass (_flowpass.c checks
every argument; flowpass_packets.c and flowpass_sums.c are the passes, flowpass_dns.c reads
DNS messages), are optional: without
a C compiler the build goes on and podcap uses the numpy code that does the same, slower.
"""

from setuptools import Extension, setup

FLOWS = "podcap/flows/"

setup(
    ext_modules=[
        Extension(
            "podcap.flows._flowpass",
            [
                FLOWS + name
                for name in (
                    "_flowpass.c",
                    "flowpass_packets.c",
                    "flowpass_sums.c",
                    "flowpass_dns.c",
                )
            ],
            depends=[FLOWS + "_flowpass.h"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
