# syntax=docker/dockerfile:1
# Kairos worker image: `docker run kairos worker` (the default) runs a Faust worker against
# KAIROS_BROKER. Every setting is a KAIROS_* environment variable (app/settings.py).

FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/kairos
ENV PATH=/opt/kairos/bin:$PATH

WORKDIR /src
COPY pyproject.toml README.md ./
COPY app/ app/
COPY agents/ agents/
COPY tables/ tables/
COPY schemas/ schemas/
COPY engine/ engine/
RUN pip install .


FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/kairos/bin:$PATH \
    KAIROS_WEB_HOST=0.0.0.0 \
    KAIROS_WEB_PORT=6066 \
    KAIROS_DATA_DIR=/var/lib/kairos \
    KAIROS_RULES=/etc/kairos/rules

RUN groupadd --system --gid 10001 kairos \
    && useradd --system --uid 10001 --gid kairos --no-create-home --home-dir /var/lib/kairos \
        --shell /usr/sbin/nologin kairos \
    && mkdir -p /var/lib/kairos \
    && chown kairos:kairos /var/lib/kairos

COPY --from=build /opt/kairos /opt/kairos
COPY --chmod=0755 docker/entrypoint.sh /usr/local/bin/kairos-entrypoint
# The example rules, so the image runs as is; mount your own folder over /etc/kairos/rules.
COPY examples/rules/ /etc/kairos/rules/

USER kairos
WORKDIR /var/lib/kairos
VOLUME ["/var/lib/kairos"]
EXPOSE 6066

# kairos-entrypoint sets KAIROS_CANONICAL_URL when unset, then execs the `kairos` console script.
ENTRYPOINT ["kairos-entrypoint"]
CMD ["worker"]
