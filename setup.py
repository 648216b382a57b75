"""The compiled modules: optional, as aiohttp's and msgpack's are.

With Cython and a C compiler, ``inspector/_*.pyx`` are built into extension
modules; without either, or when a build fails, the install goes on and
rtinspect uses its pure-Python modules, which give the same results.
``RTINSPECT_NO_EXTENSIONS=1`` at install time skips the build.
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

EXTENSIONS = [
    Extension("inspector._capture", ["inspector/_capture.pyx"]),
    Extension("inspector._websocket", ["inspector/_websocket.pyx"]),
]


def _warn(message: str) -> None:
    print(f"warning: {message}; rtinspect will use its pure-Python modules", file=sys.stderr)


class OptionalBuildExt(build_ext):
    """build_ext whose failures are warnings, not errors."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as error:  # no compiler, or a broken one
            _warn(f"the compiled modules could not be built ({error})")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as error:
            _warn(f"{ext.name} could not be built ({error})")


def extensions() -> list[Extension]:
    if os.environ.get("RTINSPECT_NO_EXTENSIONS"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        _warn("Cython is not installed")
        return []
    try:
        return cythonize(EXTENSIONS, compiler_directives={"language_level": "3"}, quiet=True)
    except Exception as error:
        _warn(f"Cython could not translate the compiled modules ({error})")
        return []


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
