# CareWatch service image: `carewatch run` by default; any other subcommand
# (ingest, api, simulate ...) as the container command.
#
# The build context is the repository root. A .dockerignore listing .venv, .git
# and var keeps the context small; nothing from it but the installed package
# reaches the final image either way (two stages).

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# A virtualenv at the same path in both stages, so it can be copied as is.
RUN python -m venv /opt/carewatch
WORKDIR /src
COPY . .
RUN /opt/carewatch/bin/pip install .

FROM python:3.11-slim
ENV PATH=/opt/carewatch/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# Non-root: a system user owning only the state folder (spool, checkpoints,
# dead-letter file, SQLite registry).
RUN groupadd --system --gid 10001 carewatch \
 && useradd --system --uid 10001 --gid carewatch --no-create-home \
        --home-dir /var/lib/carewatch --shell /usr/sbin/nologin carewatch \
 && mkdir -p /var/lib/carewatch \
 && chown carewatch:carewatch /var/lib/carewatch

COPY --from=build /opt/carewatch /opt/carewatch

# Mount a volume here (docker-compose.yml does) or the spool and registry are
# lost with the container.
ENV CAREWATCH_STATE_DIR=/var/lib/carewatch
# 0.0.0.0 inside a container only: the container's own network namespace is
# the boundary, and compose publishes the port on the host as 127.0.0.1:8000.
# Outside a container the default stays 127.0.0.1:8000.
ENV CAREWATCH_HTTP_LISTEN=0.0.0.0:8000

USER carewatch
WORKDIR /var/lib/carewatch
EXPOSE 8000

# No HEALTHCHECK here: the same image also runs `simulate`, which serves no
# HTTP. docker-compose.yml checks /healthz on the service that serves it.
ENTRYPOINT ["carewatch"]
CMD ["run"]
