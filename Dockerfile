# hpscaler as a container (sidecar or Deployment). Small, non-root, pinned base image.
# For reproducible builds pin the base by digest as well: FROM python:3.11.14-slim-bookworm@sha256:...
FROM python:3.11.14-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY deploy/constraints.txt ./constraints.txt
COPY hpscaler ./hpscaler
# Every run-time dependency is pinned (deploy/constraints.txt, from deploy/pin_constraints.py), so
# an image built later gets the versions that were tested.
RUN python -m venv /opt/hpscaler \
 && /opt/hpscaler/bin/pip install --constraint constraints.txt . \
 && /opt/hpscaler/bin/python -m compileall -q /opt/hpscaler

FROM python:3.11.14-slim-bookworm
COPY --from=build /opt/hpscaler /opt/hpscaler
# A fixed unprivileged uid (no shell, no home) so Kubernetes can enforce runAsNonRoot.
USER 65532:65532
ENV PATH=/opt/hpscaler/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HPSCALER_LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["hpscaler"]
CMD ["run", "--config", "/etc/hpscaler"]
