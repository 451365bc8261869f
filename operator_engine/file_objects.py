"""A job's decrypted file objects (the publisher's secret URLs), kept out of the database.

They are written at submit time to ``<job folder>/files.json`` (0600, in the 0700 job folder),
read by the worker for the provisioning stages, and deleted with the inputs when the job ends
(:meth:`operator_engine.workspace.JobFolder.remove_inputs`). The store's ``request`` column
holds the rest of the request, with every ``files`` list empty.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from operator_engine.models import JobRequest
from operator_engine.workspace import FILE_OBJECTS, JobFolder


class FileObjectsMissing(RuntimeError):
    """The job's file objects are gone (its folder was removed before the job ran)."""


def save(folder: JobFolder, request: JobRequest) -> None:
    """Write ``request``'s file objects into the (new) job folder, readable by the engine only."""
    folder.root.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder.root.mkdir(mode=0o700, exist_ok=True)
    data = {
        "datasets": [d.files for d in request.datasets],
        "algorithm": request.algorithm.files,
    }
    path = folder.root / FILE_OBJECTS
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle)


def load(folder: JobFolder, request: JobRequest) -> JobRequest:
    """``request`` (as the store holds it) with its file objects put back. A job queued by a
    version that kept them in the store still carries them: it is returned as it is."""
    try:
        fd = os.open(folder.root / FILE_OBJECTS, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd) as handle:
            data: dict[str, Any] = json.load(handle)
    except (OSError, ValueError) as exc:
        if request.algorithm.files or any(d.files for d in request.datasets):
            return request
        raise FileObjectsMissing(f"the job's file objects are missing ({exc})") from None
    datasets = [
        dataclasses.replace(d, files=list(files))
        for d, files in zip(request.datasets, data["datasets"], strict=True)
    ]
    algorithm = dataclasses.replace(request.algorithm, files=list(data["algorithm"]))
    return dataclasses.replace(request, datasets=datasets, algorithm=algorithm)
