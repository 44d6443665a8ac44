#!/bin/sh
# Takes out of the image's virtualenv what serving never reads (run by the Dockerfile's builder stage,
# after the installs; docs/ARCHITECTURE.md, "The image and its builds", has the table of what stays).
# Each step is safe because nothing the service runs imports or opens it; docker/precompile.py then
# imports and runs what serving does (a build fails if a step took too much), and `make docker/test`
# runs the suite in the image.
#
#   sh docker/slim_venv.sh /opt/venv
set -eu
venv=${1:?usage: slim_venv.sh VENV}
site=$(echo "$venv"/lib/python3.*/site-packages)

# The packages' own test suites (scikit-learn's, scipy's, numpy's, pandas', joblib's: about 100 MB).
find "$site" -depth -type d \( -name tests -o -name test \) -exec rm -rf {} +
# Test helpers no serving code imports: SQLAlchemy's and Alembic's test frameworks.
rm -rf "$site/sqlalchemy/testing" "$site/alembic/testing"
# Type stubs, Cython and C sources, C headers: for building against a package, not for running it.
find "$site" -type f \( -name '*.pyi' -o -name '*.pxd' -o -name '*.pyx' -o -name '*.c' -o -name '*.cpp' \
    -o -name '*.h' -o -name '*.hpp' \) -delete
# numpy's distutils, a build tool (f2py stays: `from numpy import *`, which scipy runs, imports it).
rm -rf "$site/numpy/distutils"
# scipy subpackages that neither LightGBM nor the scikit-learn classes a pipeline may hold import
# (compat/sklearn_internals.py): file formats, signal processing, ODR, clustering, sample datasets.
for unused in io signal odr misc fftpack differentiate datasets cluster; do
    rm -rf "${site:?}/scipy/$unused"
done
# scikit-learn's sample datasets and their loaders (which read with scipy.io, gone above), and the
# estimators a served pickle may not hold (the allowlist refuses them) that nothing else imports:
# trees and forests, clustering, manifolds, Gaussian processes, mixtures, neural networks, feature
# extraction and selection, inspection.
for unused in datasets tree ensemble cluster manifold gaussian_process mixture neural_network \
    feature_extraction feature_selection inspection; do
    rm -rf "${site:?}/sklearn/$unused"
done
# SQLAlchemy's dialects of other databases (no driver of theirs is installed either).
rm -rf "$site/sqlalchemy/dialects/mysql" "$site/sqlalchemy/dialects/mssql" "$site/sqlalchemy/dialects/oracle"
# Swagger UI's source maps (for a browser's developer tools) and the builds of it /docs does not load
# (flask-smorest's page loads swagger-ui-bundle.js, swagger-ui-standalone-preset.js, swagger-ui.css).
find "$site/swagger_ui_bundle" -type f \( -name '*.map' -o -name 'swagger-ui-es-bundle*.js' \
    -o -name 'swagger-ui.js' \) -delete
# Debug symbols in shared objects that carry them (uvloop, httptools, SQLAlchemy's: ~12 MB). Only
# those: stripping the symbol tables of the wheels' patched libraries (numpy.libs, ...) breaks them.
find "$site" -type f -name '*.so*' -exec sh -c \
    'objdump -h "$1" | grep -q "\.debug_info" && strip --strip-debug "$1" || true' _ {} \;
# The installers (the image never installs anything after this stage).
"$venv/bin/python" -m pip uninstall --yes --quiet setuptools wheel pip
# Every bytecode file: docker/precompile.py writes back those of what serving imports.
find "$venv" -depth -type d -name __pycache__ -exec rm -rf {} +
