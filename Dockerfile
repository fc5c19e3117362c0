# Herald: one image, one `herald <process>` per container.
# Multi-stage: dependencies are built in a throw-away stage; the runtime stage has no compiler,
# no pip cache and runs as an unprivileged user. Base images pinned by version.
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements.lock pyproject.toml README.md ./
RUN python -m venv /venv && /venv/bin/pip install -r requirements.lock
COPY libs libs
COPY services services
RUN /venv/bin/pip install --no-deps .

FROM python:3.11.11-slim-bookworm
RUN groupadd --system --gid 10001 herald && useradd --system --uid 10001 --gid herald --no-create-home herald
COPY --from=build /venv /venv
ENV PATH=/venv/bin:$PATH PYTHONUNBUFFERED=1 HERALD_DATA_DIR=/tmp/herald \
    HERALD_API_HOST=0.0.0.0 HERALD_WORKER_METRICS_HOST=0.0.0.0 HERALD_SINKS_METRICS_HOST=0.0.0.0 \
    HERALD_CARRIER_SIM_HOST=0.0.0.0
USER 10001:10001
ENTRYPOINT ["herald"]
CMD ["api"]
