# A development S3 server for kind (moto's server mode, the same S3 the test suite uses), with the
# buckets of CLM_S3_BUCKETS created at start. Not for production data: everything lives in memory.
# Build from the repository root:  docker build -f deploy/images/s3.Dockerfile -t clm-s3:0.1.0 .
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
FROM ${PYTHON_IMAGE}
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY deploy/images/constraints.txt /tmp/constraints.txt
RUN python -m venv /opt/s3 \
 && /opt/s3/bin/pip install --constraint /tmp/constraints.txt "moto[server]" boto3 \
 && rm /tmp/constraints.txt \
 && groupadd --gid 10001 clm \
 && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin clm
COPY deploy/images/s3_server.py /opt/s3/s3_server.py
ENV PATH=/opt/s3/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp
USER 10001:10001
EXPOSE 5000
ENTRYPOINT ["python", "/opt/s3/s3_server.py"]
