"""target-gcs-guard: a safe way to run target-gcs 1.2.3 for backups.

`guard` supervises the target as a child process and forwards STATE only once the data is verified in
the bucket; `target` is the child: target-gcs 1.2.3 with two fixes in its sink.
"""
