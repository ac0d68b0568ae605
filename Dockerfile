# One image for every Ferry process; the command picks the service:
#   ferry serve export | ferry serve import | ferry gateway | ferry db upgrade | ferry export run ...
# Dependencies come from constraints.txt (`make constraints`), so two builds get the same
# versions. The generated protos (ferry/v1) are committed, so no code generation happens here.
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CONSTRAINT=/src/constraints.txt
WORKDIR /src
RUN python -m venv /opt/ferry
COPY constraints.txt pyproject.toml README.md ./
COPY ferry ./ferry
COPY services ./services
COPY gateway ./gateway
# Not editable: the image carries the package, its generated code and the page's files.
RUN /opt/ferry/bin/pip install . \
 && /opt/ferry/bin/ferry --help >/dev/null

FROM python:3.11-slim-bookworm
ENV PATH=/opt/ferry/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FERRY_CONFIG=/etc/ferry/ferry.yaml
# A fixed non-root uid/gid; the manifests run as 10001 with a read-only root filesystem.
RUN groupadd --system --gid 10001 ferry \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/ferry --create-home ferry
COPY --from=build /opt/ferry /opt/ferry
# The laptop defaults; Kubernetes mounts its rendered ConfigMap over this folder.
COPY ferry.yaml /etc/ferry/ferry.yaml
USER 10001:10001
WORKDIR /var/lib/ferry
EXPOSE 50051 8080 9100
ENTRYPOINT ["ferry"]
CMD ["serve"]
