"""Where sealed object bytes live: the local filesystem (default) or S3-compatible storage."""

from __future__ import annotations

from argus_files.config import FilesConfig
from argus_files.storage.base import Storage, StorageError, Writer, object_key


def storage_for(config: FilesConfig) -> Storage:
    if config.backend == "s3":
        from argus_files.storage.s3 import S3Storage  # botocore is imported only when used

        assert config.s3 is not None
        return S3Storage(config.s3)
    from argus_files.storage.local import LocalStorage

    return LocalStorage(config.directory)


__all__ = ["Storage", "StorageError", "Writer", "object_key", "storage_for"]
