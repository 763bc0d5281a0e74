# One image per service, and one that migrates:
#   docker build --build-arg SERVICE=auth -t argus-auth .      (auth, tenant-api, audit, ...)
#   docker build --target migrate -t argus-migrate .           (roles, schemas, migrations)
#   docker build --target backup -t argus-backup .             (backups, the WAL sealer)
# Secrets are mounted as files at run time (ARGUS_*_FILE); nothing secret is baked in. Both run
# as uid 10001 on a read-only root: bytecode is compiled at build time, and the only paths
# written at run time are /tmp and (files) ARGUS_FILES_DIR, each a volume of the deployment.
# tests/deploy/test_images.py builds each venv as these RUN lines do and runs each command
# with a read-only root and only the declared volumes writable.
FROM python:3.11-slim AS source
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
WORKDIR /src
COPY pyproject.toml uv.lock ./
COPY shared shared
COPY services services

FROM source AS build
ARG SERVICE
RUN uv sync --frozen --no-dev --package "argus-${SERVICE}" --no-editable --compile-bytecode \
        --python /usr/local/bin/python3 && rm -rf /root/.cache

# `argus migrate` provisions the roles and schemas and migrates every service's schema, so its
# venv has every service package (for their migrations) and none of the embedded servers.
FROM source AS build-migrate
RUN uv sync --frozen --no-dev --package argus-auth --package argus-tenant-api \
        --package argus-audit --package argus-webhooks --package argus-files --no-editable \
        --compile-bytecode --python /usr/local/bin/python3 && rm -rf /root/.cache

FROM python:3.11-slim AS migrate
# ARGUS_DATA_DIR/secrets is where `argus migrate` reads the role passwords: the mounted secrets
ENV PATH=/src/.venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 ARGUS_DATA_DIR=/run
COPY --from=build-migrate /src/.venv /src/.venv
RUN useradd --system --uid 10001 --no-create-home --home-dir /nonexistent argus
USER 10001
WORKDIR /src
CMD ["argus", "migrate"]

# `argus backup`, `argus backups seal-wal` and `prune`: the same packages on the PostgreSQL
# image of the server's major version, so pg_basebackup and pg_archivecleanup are that version's
# (/usr/lib/postgresql/16/bin, first on PATH); Debian bookworm's python3 is the 3.11 the lock is
# resolved for. Runs as 10001 on a read-only root; writes /tmp and the backup volume only.
FROM postgres:16-bookworm AS backup
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
RUN apt-get update && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml uv.lock ./
COPY shared shared
COPY services services
RUN uv sync --frozen --no-dev --package argus-auth --package argus-tenant-api \
        --package argus-audit --package argus-webhooks --package argus-files --no-editable \
        --compile-bytecode --python /usr/bin/python3 \
    && rm -rf /root/.cache /usr/local/bin/uv /src/shared /src/services
ENV PATH=/src/.venv/bin:/usr/lib/postgresql/16/bin:$PATH PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 ARGUS_DATA_DIR=/tmp/argus
RUN useradd --system --uid 10001 --no-create-home --home-dir /nonexistent argus
USER 10001
ENTRYPOINT []
CMD ["argus", "backups", "seal-wal", "--from", "/backups", "--every", "10"]

FROM python:3.11-slim AS service
ARG SERVICE
ENV PATH=/src/.venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 ARGUS_ENV=prod \
    ARGUS_HOST=0.0.0.0 ARGUS_PORT=8000 ARGUS_SERVICE=${SERVICE} \
    ARGUS_FILES_DIR=/var/lib/argus/files
COPY --from=build /src/.venv /src/.venv
# the files directory exists, owned by the service user, so a new named volume mounted there
# starts out writable by it (Kubernetes volumes get the same from the pod's fsGroup)
RUN useradd --system --uid 10001 --no-create-home --home-dir /nonexistent argus \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/argus/files
USER 10001
WORKDIR /src
EXPOSE 8000
CMD ["sh", "-c", "exec argus-${ARGUS_SERVICE}"]
