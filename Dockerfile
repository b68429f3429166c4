# syntax=docker/dockerfile:1
# The Pantree images (docs/DEPLOY.md): one build, two final targets.
#   docker build -t pantree:0.1.0 .
#       the mesh and the batch job: `pantree serve <step>`, `pantree serve gateway`, `pantree batch`
#   docker build --target model-server -t pantree-model-server:0.1.0 .
#       the SageMaker bring-your-own-container model server (docs/SAGEMAKER.md)
# Python packages are pinned by deploy/docker/constraints.txt (`make constraints`). Nothing is
# compiled: every pinned package ships a wheel, and no compiler is installed in any stage. The
# final stages run as the unprivileged user 10001 and work with a read-only root file system.
# Pin the base image by digest for production builds:
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:<digest> .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS python-base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN groupadd --system --gid 10001 pantree \
    && useradd --system --uid 10001 --gid pantree --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin pantree

# The project without extras, in a virtual environment: all the model server needs.
FROM python-base AS build-core
WORKDIR /src
RUN python -m venv /opt/venv
COPY deploy/docker/constraints.txt ./constraints.txt
COPY pyproject.toml README.md ./
COPY pantree_common ./pantree_common
COPY services ./services
COPY gateway ./gateway
RUN pip install --constraint constraints.txt .

# The mesh adds MiniLM (a CPU build of torch, from PyTorch's own index) and a prebuilt product
# catalog, so no pod writes the catalog at start-up (PANTREE_CATALOG points at it).
FROM build-core AS build
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install --constraint constraints.txt --extra-index-url "${TORCH_INDEX_URL}" ".[minilm]" \
    && HOME=/tmp PANTREE_DATA_DIR=/tmp/pantree \
       pantree catalog build --output /opt/pantree/catalog/completejourney.json.gz

# SageMaker runs the image as `docker run IMAGE serve`; deploy/sagemaker/serve drops that word.
FROM python-base AS model-server
COPY --from=build-core /opt/venv /opt/venv
COPY --chmod=0755 deploy/sagemaker/serve /usr/local/bin/serve
ENV HOME=/tmp \
    SAGEMAKER_BIND_TO_PORT=8080
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["serve"]

# The default target. Each Kubernetes Deployment picks its step: args: ["serve", "<step>"].
FROM python-base AS pantree
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/pantree/catalog /opt/pantree/catalog
RUN mkdir -p /var/lib/pantree && chown 10001:10001 /var/lib/pantree
ENV HOME=/tmp \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    PANTREE_CATALOG=/opt/pantree/catalog/completejourney.json.gz \
    PANTREE_DATA_DIR=/var/lib/pantree
USER 10001:10001
WORKDIR /var/lib/pantree
EXPOSE 50051 9464 8080
ENTRYPOINT ["pantree"]
CMD ["serve", "all"]
