# mplab container image.
#
#   docker build -t mplab:latest .                                  # default (last) stage: the `mplab` CLI
#   docker build --target dashboard -t mplab-dashboard:latest .     # rq-dashboard on the same rq version
#
# docker-compose.yml builds both; see "The compose lab" in README.md.

# -- base: the project installed into the system interpreter, a non-root user ------------------------
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN groupadd --system --gid 10001 mplab \
 && useradd --system --uid 10001 --gid mplab --create-home --home-dir /home/mplab --shell /usr/sbin/nologin mplab

# Build from a throw-away copy: the installed package in site-packages is what runs, not /src.
# (.dockerignore keeps .venv, .git, caches and results out of the context.)
COPY . /src
RUN pip install --no-cache-dir /src \
 && rm -rf /src

WORKDIR /home/mplab

# -- dashboard: rq-dashboard next to the very rq that the workers use ---------------------------------
# rq-dashboard 0.9.0 imports `six` without declaring it, hence the explicit `six`.
# --json: the lab's jobs use RQ's JSONSerializer; without it finished/failed jobs fail to load (HTTP 500).
# The Redis URL comes from the environment: RQ_DASHBOARD_REDIS_URL=redis://:PASSWORD@redis:6379/0.
FROM base AS dashboard
ARG RQ_DASHBOARD_VERSION=0.9.0
RUN pip install --no-cache-dir "rq-dashboard==${RQ_DASHBOARD_VERSION}" six
USER mplab
EXPOSE 9181
CMD ["rq-dashboard", "--bind", "0.0.0.0", "--port", "9181", "--json"]

# -- mplab (default, last stage): worker nodes and the CLI --------------------------------------------
FROM base AS mplab
USER mplab
CMD ["mplab", "--help"]
