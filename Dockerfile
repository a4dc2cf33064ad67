# syntax=docker/dockerfile:1
# The interaction-store image: one image for every role of docker-compose.yml
# (istore serve --role ingest | worker | read), and for the istore CLI.
#
#   docker build -t interaction-store .
#   docker run --rm interaction-store --help
#
# The wheel ships streams/ and projections/ (pyproject.toml force-include), so the installed
# package finds the catalog and the projection definitions without the checkout.

FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what the wheel is built from (.dockerignore keeps the rest of the checkout out).
COPY pyproject.toml README.md /tmp/build/
COPY src/ /tmp/build/src/
COPY streams/ /tmp/build/streams/
COPY projections/ /tmp/build/projections/

RUN pip install /tmp/build \
    && rm -rf /tmp/build \
    && groupadd --system --gid 10001 istore \
    && useradd --system --uid 10001 --gid istore --create-home --home-dir /home/istore \
       --shell /usr/sbin/nologin istore \
    && mkdir -p /data \
    && chown istore:istore /data

ENV ISTORE_DATA_DIR=/data
WORKDIR /home/istore
USER 10001:10001

EXPOSE 8080 8081

ENTRYPOINT ["istore"]
CMD ["--help"]
