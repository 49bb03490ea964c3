# goldenroute worker image (docker-compose.yml builds it as the `worker` service).
#
#   docker build -t goldenroute .
#   docker run --rm -e TEMPORAL_ADDRESS=... -e DATABASE_URL=... goldenroute
#
# Configuration is environment-only; worker/settings.py lists the variables.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# An unprivileged user with a fixed uid (stable ownership of mounted volumes).
RUN groupadd --system --gid 10001 goldenroute \
 && useradd --system --uid 10001 --gid goldenroute \
        --home-dir /home/goldenroute --create-home --shell /usr/sbin/nologin goldenroute

# Install from a throwaway source tree: only the installed package stays.
WORKDIR /tmp/goldenroute-src
COPY pyproject.toml ./
COPY workflows/ workflows/
COPY activities/ activities/
COPY worker/ worker/
COPY starter/ starter/
RUN pip install --no-cache-dir . \
 && cd / && rm -rf /tmp/goldenroute-src

USER goldenroute
WORKDIR /home/goldenroute
# Local state (dev-stack file etc.) goes to the user's home, never the image root.
ENV GOLDENROUTE_HOME=/home/goldenroute/.goldenroute \
    LOG_FORMAT=json \
    METRICS_PORT=9464

# Prometheus metrics (METRICS_PORT).
EXPOSE 9464

# Exec form: the worker is PID 1's direct child under `init: true` (compose)
# and receives SIGTERM itself for a graceful shutdown.
CMD ["goldenroute", "worker"]
