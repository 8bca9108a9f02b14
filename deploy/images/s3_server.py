"""moto's S3 server on 0.0.0.0:$PORT with the buckets of $CLM_S3_BUCKETS created; runs until SIGTERM."""

from __future__ import annotations

import os
import signal
import threading

import boto3
from moto.server import ThreadedMotoServer


def main() -> None:
    port = int(os.environ.get("PORT", "5000"))
    server = ThreadedMotoServer(ip_address="0.0.0.0", port=port, verbose=False)
    server.start()
    s3 = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="moto",
        aws_secret_access_key="moto",
    )
    for bucket in filter(None, (b.strip() for b in os.environ.get("CLM_S3_BUCKETS", "").split(","))):
        s3.create_bucket(Bucket=bucket)
        print(f"created bucket {bucket}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"S3 (moto) listening on :{port}", flush=True)
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
