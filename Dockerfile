# The mtls-operator image: `mtls-operator run` as a numeric non-root user on a slim Python.
#   docker build -t mtls-operator:0.1.0 .
# Two stages: the build stage installs the package and its dependencies (all wheels) into a
# virtualenv; the final stage copies only that virtualenv, so pip's build environment, the source
# tree and any compiler never reach the image.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/mtls-operator
# Only what the package build reads (.dockerignore keeps the rest of the repository out).
COPY pyproject.toml README.md ./
COPY operator ./operator
# No extras: the runtime needs neither the emulator nor the test tools. The installers leave the
# virtualenv once they are done: nothing at run time imports them.
RUN /opt/mtls-operator/bin/pip install --no-cache-dir . \
 && /opt/mtls-operator/bin/pip uninstall --yes setuptools pip

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="mtls-operator" \
      org.opencontainers.image.description="Per-pod mutual-TLS certificates from an in-cluster CA" \
      org.opencontainers.image.licenses="Apache-2.0"
# Bytecode was compiled at install time; the root filesystem is read-only at run time anyway.
ENV PATH=/opt/mtls-operator/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The base image's own installers are not needed at run time either: fewer tools for an intruder.
RUN python -m pip uninstall --yes --root-user-action=ignore pip setuptools wheel
COPY --from=build /opt/mtls-operator /opt/mtls-operator
# Numeric, so that Kubernetes can check runAsNonRoot without an /etc/passwd lookup; the chart
# runs the same IDs. No user entry is needed: nothing reads HOME.
USER 65532:65532
# Metrics, admission webhooks (HTTPS), kopf's liveness endpoint.
EXPOSE 9090 9443 8080
ENTRYPOINT ["mtls-operator"]
CMD ["run"]
