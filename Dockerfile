# One image per service: docker build --build-arg SERVICE=auth -t argus-auth .
# Secrets are mounted as files at run time (ARGUS_*_FILE); nothing secret is baked in.
FROM python:3.11-slim AS build
ARG SERVICE
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
WORKDIR /src
COPY pyproject.toml uv.lock ./
COPY shared shared
COPY services services
RUN uv sync --frozen --no-dev --package "argus-${SERVICE}" --no-editable \
        --python /usr/local/bin/python3 && rm -rf /root/.cache

FROM python:3.11-slim
ARG SERVICE
ENV PATH=/src/.venv/bin:$PATH ARGUS_ENV=prod ARGUS_HOST=0.0.0.0 ARGUS_PORT=8000 \
    ARGUS_SERVICE=${SERVICE}
COPY --from=build /src/.venv /src/.venv
RUN useradd --system --uid 10001 argus
USER 10001
EXPOSE 8000
CMD ["sh", "-c", "exec argus-${ARGUS_SERVICE}"]
