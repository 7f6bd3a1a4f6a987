"""Only the optional C speedups (cdc/_speedups.c, router/_murmur2.c); everything else is in pyproject.toml.

`optional=True`: without a C compiler the install still succeeds and the pure-Python
versions run (cdc/native.py and `router.balance.NATIVE` say which is in use).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("cdc._speedups", ["cdc/_speedups.c"], optional=True),
                   Extension("router._murmur2", ["router/_murmur2.c"], optional=True)])
