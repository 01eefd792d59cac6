# The Skiff server image: the `skiff` CLI with the gateway, the controller and the cluster clients
# (SQS/S3, Redis, Nomad, Consul). One image for both services: `skiff gateway` and `skiff controller`
# need the same core and the same client libraries, and nomad/gateway.nomad.hcl and
# nomad/controller.nomad.hcl run it with args ["gateway"] / ["controller"]. See docs/images.md.
#
#   docker build -t ghcr.io/<org>/skiff:0.1.0 .        (or scripts/build-images.sh)
#
# Dependencies come from cli/requirements.lock (exact versions, hash-checked; scripts/lock.sh writes
# it), the workspace's own packages are installed on top without dependencies. Only wheels: the
# image has no compiler and needs none. The virtualenv (/opt/skiff) has no pip: nothing installs
# into it at run time.
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
# uv (the version scripts/uv.sh pins) installs the lock in parallel: several times faster than pip.
# It reads the CA bundle named by SSL_CERT_FILE, as a build behind an HTTPS proxy needs.
ARG UV_VERSION=0.13.9
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    UV_NO_CACHE=1 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
WORKDIR /src
RUN python3 -m venv /opt/uv \
 && /opt/uv/bin/pip install --quiet "uv==${UV_VERSION}" \
 && /opt/uv/bin/uv venv --quiet --python "$(command -v python3)" /opt/skiff
COPY cli/requirements.lock cli/requirements.lock
RUN /opt/uv/bin/uv pip install --quiet --python /opt/skiff/bin/python --only-binary :all: \
      --require-hashes -r cli/requirements.lock
COPY sdk sdk
COPY core core
COPY gateway gateway
COPY controller controller
COPY cli cli
# Byte-compiled at install: the image's files are read-only to the service's user. --no-sources: the
# members name each other as workspace sources, and the workspace root is not in the context.
RUN /opt/uv/bin/uv pip install --quiet --python /opt/skiff/bin/python --no-deps --no-sources \
      ./sdk ./core ./gateway ./controller ./cli \
 && /opt/skiff/bin/skiff --help >/dev/null

FROM ${BASE}
# A fixed, unprivileged uid: Nomad and Kubernetes can check it is not root without a passwd lookup.
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/skiff --create-home \
      --shell /usr/sbin/nologin skiff \
 && mkdir -p /etc/skiff/endpoints
COPY --from=build /opt/skiff /opt/skiff
COPY scripts/healthcheck.py /opt/skiff/healthcheck.py
# Embedded defaults: state (SQLite, payloads, the generated API key) in /var/lib/skiff, endpoint files
# mounted at /etc/skiff/endpoints. In a cluster every SKIFF_* setting comes from the environment.
ENV PATH=/opt/skiff/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SKIFF_HOST=0.0.0.0 \
    SKIFF_PORT=8000 \
    SKIFF_STATE_DIR=/var/lib/skiff \
    SKIFF_ENDPOINTS_DIR=/etc/skiff/endpoints
WORKDIR /var/lib/skiff
USER 10001:10001
EXPOSE 8000
# The gateway's GET /healthz, the controller's when it serves --port; a controller without a port
# has nothing to ask, and is healthy while it runs (scripts/healthcheck.py).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/opt/skiff/bin/python", "/opt/skiff/healthcheck.py"]
ENTRYPOINT ["skiff"]
CMD ["gateway"]
