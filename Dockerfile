# afterimage: multi-stage build. The builder compiles wheels; the runtime image holds only them,
# runs as an unprivileged user and keeps all state in the /data volume.

FROM python:3.11-slim-bookworm AS builder
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY watchers ./watchers
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="afterimage" \
      org.opencontainers.image.description="Watches official accounts for recycled images and deletions"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    AFTERIMAGE_DATA=/data \
    AFTERIMAGE_CONFIG=/config/afterimage.yaml
COPY --from=builder /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl \
    && rm -rf /wheels \
    && groupadd --system --gid 10001 afterimage \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --shell /usr/sbin/nologin afterimage \
    && mkdir -p /data /config \
    && chown afterimage:afterimage /data
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 9108
# the config must set health.listen: 0.0.0.0:9108 for this check (see docker-compose.yml)
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=4).status != 200)"]
ENTRYPOINT ["afterimage"]
CMD ["run"]
