# syntax=docker/dockerfile:1
# The Longshore service image: `longshore serve` (admin API + scheduler + worker), or any other
# `longshore` command. See docs/deployment.md: the admin API listens on 0.0.0.0:8081 with
# mutual TLS only (certificates in /certs), state lives in /data, and container jobs run on
# the host's Docker engine through its mounted socket.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: install the package and its dependencies into a virtual environment ---------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/longshore
WORKDIR /src
COPY pyproject.toml README.md ./
COPY longshore ./longshore
COPY store ./store
COPY jobrunner ./jobrunner
COPY scheduler ./scheduler
COPY admin ./admin
COPY service ./service
RUN /opt/longshore/bin/pip install . \
    && /opt/longshore/bin/longshore --help > /dev/null

# --- runtime ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
# git: git sources run the git binary. ca-certificates: HTTPS to git servers and tarball hosts.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# A fixed, non-root uid/gid so that volume ownership is predictable. /data and /certs are
# created here, owned by that user, so new named volumes mounted on them start with the
# same owner (Docker copies the mount point's ownership into an empty named volume).
RUN groupadd --system --gid 10001 longshore \
    && useradd --system --uid 10001 --gid longshore --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin longshore \
    && mkdir -p /data /certs \
    && chown longshore:longshore /data /certs \
    && chmod 0700 /certs
COPY --from=build /opt/longshore /opt/longshore
# What GET /admin/v1/health reports as the build (service/build_info.py), e.g.
#   docker build --build-arg LONGSHORE_BUILD_COMMIT=$(git rev-parse HEAD) \
#     --build-arg LONGSHORE_BUILD_TIME=$(date -u +%Y-%m-%dT%H:%M:%SZ) .
# Left empty, the build time is when the package was installed above and the commit "".
ARG LONGSHORE_BUILD_COMMIT=""
ARG LONGSHORE_BUILD_TIME=""

ENV LONGSHORE_BUILD_COMMIT=$LONGSHORE_BUILD_COMMIT \
    LONGSHORE_BUILD_TIME=$LONGSHORE_BUILD_TIME \
    PATH=/opt/longshore/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/data \
    WORKER_DATA_DIR=/data \
    WORKER_ADMIN_HTTP_ADDR=0.0.0.0:8081 \
    WORKER_ADMIN_TLS_CERT=/certs/server.pem \
    WORKER_ADMIN_TLS_KEY=/certs/server-key.pem \
    WORKER_ADMIN_TLS_CA=/certs/ca.pem

USER longshore:longshore
WORKDIR /data
EXPOSE 8081

# GET /admin/v1/health over mTLS with the `healthcheck` client certificate (role viewer),
# made by `longshore certs init --client healthcheck:viewer` (docs/deployment.md). The
# server certificate must name 127.0.0.1 (`--host 127.0.0.1`).
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, ssl, sys, httpx; d = os.environ.get('LONGSHORE_HEALTHCHECK_CERTS', '/certs'); c = ssl.create_default_context(cafile=f'{d}/ca.pem'); c.load_cert_chain(f'{d}/client-healthcheck.pem', f'{d}/client-healthcheck-key.pem'); sys.exit(httpx.get('https://127.0.0.1:8081/admin/v1/health', verify=c, timeout=5).status_code != 200)"]

CMD ["longshore", "serve"]
