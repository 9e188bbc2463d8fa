# hpscaler as a container (sidecar or Deployment). Small, non-root, pinned base image.
FROM python:3.11.14-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY hpscaler ./hpscaler
RUN python -m venv /opt/hpscaler \
 && /opt/hpscaler/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/hpscaler/bin/pip install --no-cache-dir .

FROM python:3.11.14-slim-bookworm
COPY --from=build /opt/hpscaler /opt/hpscaler
# A fixed unprivileged uid (no shell, no home) so Kubernetes can enforce runAsNonRoot.
USER 65532:65532
ENV PATH=/opt/hpscaler/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HPSCALER_LOG_LEVEL=info
EXPOSE 8080
ENTRYPOINT ["hpscaler"]
CMD ["run", "--config", "/etc/hpscaler"]
