"""tfdc: Deep Compression for Keras 3 + TensorFlow Lite / LiteRT."""

import os
import re

from setuptools import Extension, find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))
NATIVE = os.path.join("tfdc", "native")

# The native decoder is an optional CPython extension: without a C compiler
# (or zlib's headers) the install still succeeds, and tfdc.decode and the
# packer's rANS encoder (tfdc.rans.encode) fall back to NumPy.
ext_modules = []
_sources = [os.path.join(NATIVE, "tfdc_decode.c"), os.path.join(NATIVE, "pymodule.c")]
if all(os.path.exists(os.path.join(HERE, s)) for s in _sources):
    ext_modules.append(Extension(
        "tfdc._native",
        sources=_sources,
        include_dirs=[NATIVE],
        libraries=["z"],  # zlib: format 2's meta stream is raw DEFLATE
        extra_compile_args=["-O2", "-std=c99"],
        optional=True,
    ))

with open(os.path.join(HERE, "README.md"), encoding="utf-8") as f:
    long_description = f.read()

# The version has one home, tfdc/__init__.py (read, not imported: importing
# tfdc needs its dependencies, which are not installed yet).
with open(os.path.join(HERE, "tfdc", "__init__.py"), encoding="utf-8") as f:
    version = re.search(r'^__version__ = "([^"]+)"$', f.read(), re.M).group(1)

# The CPU-only TensorFlow wheel is a third of the size of the full one; it is
# the same converter. Elsewhere the regular wheel is used.
_TF_CPU = "platform_system == 'Linux' and platform_machine == 'x86_64'"

setup(
    name="tfdc",
    version=version,
    description="Deep Compression (pruning, trained quantization, Huffman coding) for "
                "Keras 3 models deployed with TensorFlow Lite / LiteRT",
    long_description=long_description,
    long_description_content_type="text/markdown",
    packages=find_packages(include=["tfdc", "tfdc.*"]),
    package_data={"tfdc": ["v2_dictionary.bin", "native/*.c", "native/*.cc", "native/*.h", "native/CMakeLists.txt"]},
    python_requires=">=3.10",
    install_requires=[
        f"tensorflow-cpu>=2.16; {_TF_CPU}",
        "tensorflow>=2.16; platform_system != 'Linux' or platform_machine != 'x86_64'",
        "keras>=3.0",
        "numpy>=1.24",
        "flatbuffers>=23.5",
        "ai-edge-litert>=1.2; platform_system != 'Windows'",
    ],
    extras_require={
        "test": ["pytest>=7", "pytest-xdist>=3", "hypothesis>=6"],
        "demo": ["matplotlib>=3.6", "scikit-learn>=1.2"],
        # Interop and side-by-side benchmarks only: tfmot needs legacy
        # tf_keras and the full tensorflow wheel.
        "tfmot": ["tensorflow-model-optimization>=0.8", "tf-keras>=2.16"],
    },
    ext_modules=ext_modules,
    entry_points={"console_scripts": ["tfdc=tfdc.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: C",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
