"""Fetching the datasets by their official routes, and checking what was fetched.

Nothing here downloads at import: a transfer starts only from ``calf download`` or from a
call to one of the route functions. ``requests`` and ``synapseclient`` are imported only
inside the functions that use them.
"""

from calf.download.extract import archive_kind, safe_extract
from calf.download.http import fetch
from calf.download.manifest import (
    MANIFEST_NAME,
    VerifyReport,
    build_manifest,
    read_manifest,
    verify_folder,
    write_manifest,
)
from calf.download.redact import Redactor, redact_url
from calf.download.routes import (
    AccessNeeded,
    aspera_route,
    crosswalk_route,
    gated_route,
    http_route,
    local_route,
    staging_path,
    synapse_route,
)
from calf.download.sources import CROSSWALKS, DATASETS, ROUTES

__all__ = [
    "CROSSWALKS",
    "DATASETS",
    "MANIFEST_NAME",
    "ROUTES",
    "AccessNeeded",
    "Redactor",
    "VerifyReport",
    "archive_kind",
    "aspera_route",
    "build_manifest",
    "crosswalk_route",
    "fetch",
    "gated_route",
    "http_route",
    "local_route",
    "read_manifest",
    "redact_url",
    "safe_extract",
    "staging_path",
    "synapse_route",
    "verify_folder",
    "write_manifest",
]
