"""``calf download``: fetch a dataset by its official route, check a local copy, or verify.

calf download --dataset DATASET [--route ROUTE] --out DIR [route options]
calf download --dataset DATASET --route local --source DIR [--manifest PATH]
calf download --verify DIR [--manifest PATH]
calf download --crosswalk FILE --out PATH [--url URL]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from calf.download.sources import (
    BRATS_2023_GLI_TRAINING,
    CROSSWALKS,
    DATASETS,
    ROUTE_DATASETS,
    ROUTES,
    SYNAPSE_TOKEN_ENV,
    URL_ENV,
)
from calf.errors import CalfError

if TYPE_CHECKING:
    from calf.download.redact import Redactor

_EPILOG = f"""\
routes (default: the dataset's official route):
  synapse  brats. Downloads a Synapse entity (default {BRATS_2023_GLI_TRAINING}, the BraTS 2023
           GLI training zip) with the optional package synapseclient; the token is read from
           ${SYNAPSE_TOKEN_ENV}, never from the command line.
  aspera   upenn_gbm, ucsf_pdgm. Receives the TCIA NIfTI release (a Faspex package) with the
           Aspera CLI `ascli` when it is on PATH. --url (or ${URL_ENV}) is the public package
           link from the collection page; it reaches ascli through the environment.
  gated    lgg_1p19q. Controlled access: prints how to request it; exits non-zero.
  local    any dataset. Checks --source against the dataset's folder layout and writes the
           manifest there (or at --manifest). Nothing is copied.
  http     any dataset. Streams --url (or ${URL_ENV}) into DIR.partial/NAME.part, resumes
           with HTTP Range requests, retries --retries times with doubling waits, checks
           --size and --sha256 when given.
crosswalk files (--crosswalk FILE --out PATH), which link subjects found in two releases:
{chr(10).join(f"  {s.file:<32} {s.url or 'no public download: ' + s.home}" for s in CROSSWALKS.values())}
  The file is fetched to PATH.part (resumed on the next call), then renamed to PATH.
A missing client, token or approval prints how to get access and where to put the data,
and exits non-zero.

Downloads land in DIR only when complete: archives (.zip, .tar, .tar.gz, ...) are
extracted safely (no member may escape DIR), every file is listed with size and SHA-256
in DIR/calf_manifest.json, then DIR appears at once. An interrupted transfer keeps
DIR.partial; run the same command again to resume. An existing DIR is never overwritten.
Credentials (tokens, passwords and query strings of URLs) never appear in output or
manifests.

examples:
  export {SYNAPSE_TOKEN_ENV}=...; calf download --dataset brats --out data/brats
  calf download --dataset ucsf_pdgm --url 'https://faspex...' --out data/ucsf_pdgm
  calf download --dataset upenn_gbm --route local --source /data/UPENN-GBM
  calf download --dataset folder --route http --url https://mirror/x.tar.gz --sha256 HEX --out data/x
  calf download --verify data/brats
  calf download --crosswalk UCSF-PDGM-metadata_v5.csv --out resources/crosswalk/UCSF-PDGM-metadata_v5.csv
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EPILOG
    parser.add_argument("--dataset", choices=sorted(DATASETS), help="which dataset")
    parser.add_argument(
        "--route", choices=ROUTES, help="how to get it (default: its official route)"
    )
    parser.add_argument(
        "--out", type=Path, metavar="DIR", help="dataset folder to create (must not exist)"
    )
    parser.add_argument("--source", type=Path, metavar="DIR", help="local: the folder to check")
    parser.add_argument(
        "--manifest",
        type=Path,
        metavar="PATH",
        help="local, --verify: manifest file (default: DIR/calf_manifest.json)",
    )
    parser.add_argument(
        "--verify", type=Path, metavar="DIR", help="re-check DIR against its manifest"
    )
    parser.add_argument(
        "--crosswalk",
        choices=sorted(CROSSWALKS),
        metavar="FILE",
        help="fetch this published linking file to --out PATH (see below)",
    )
    parser.add_argument(
        "--url", help=f"aspera, http: the link (or set ${URL_ENV} to keep it off the command line)"
    )
    parser.add_argument(
        "--entity",
        default=BRATS_2023_GLI_TRAINING,
        metavar="SYN_ID",
        help=f"synapse: the entity to fetch (default {BRATS_2023_GLI_TRAINING})",
    )
    parser.add_argument(
        "--sha256", metavar="HEX", help="http: expected SHA-256 of the downloaded file"
    )
    parser.add_argument(
        "--size", type=int, metavar="BYTES", help="http: expected size of the downloaded file"
    )
    parser.add_argument(
        "--retries", type=int, default=3, help="http: further attempts after a failure (default 3)"
    )
    parser.add_argument(
        "--backoff",
        type=float,
        default=1.0,
        metavar="S",
        help="http: first wait between attempts, doubling (default 1)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="http: connect/read timeout (default 60)",
    )
    parser.add_argument(
        "--no-extract", action="store_true", help="keep downloaded archives as they are"
    )


def _resolve_route(args: argparse.Namespace) -> str:
    if args.dataset is None:
        raise CalfError("--dataset is required (or use --verify DIR)")
    route = args.route or DATASETS[args.dataset].route
    if route is None:
        raise CalfError(f"--dataset {args.dataset}: give --route local or --route http")
    allowed = ROUTE_DATASETS.get(route)
    if allowed is not None and args.dataset not in allowed:
        raise CalfError(
            f"--route {route} serves {', '.join(allowed)}, not --dataset {args.dataset}"
        )
    if route == "local":
        if args.source is None:
            raise CalfError("--route local needs --source DIR")
        if args.out is not None:
            raise CalfError("--route local checks --source in place; --out is not used")
    elif args.out is None:
        raise CalfError(f"--route {route} needs --out DIR")
    return route


def _verify(folder: Path, manifest: Path | None) -> int:
    from calf.download.manifest import verify_folder

    report = verify_folder(folder, manifest)
    for rel in report.missing:
        print(f"missing: {rel}")
    for rel, what in report.changed:
        print(f"changed: {rel} ({what})")
    if not report.ok:
        first = report.missing[0] if report.missing else report.changed[0][0]
        raise CalfError(
            f"{folder} does not match {report.manifest}: {len(report.missing)} missing, "
            f"{len(report.changed)} changed of {report.checked} files (first: {first})"
        )
    print(f"OK: {report.checked} files in {folder} match {report.manifest}")
    return 0


def _crosswalk(args: argparse.Namespace, url: str | None, redactor: Redactor) -> int:
    from calf._fs import sha256_file
    from calf.download import routes

    if args.dataset is not None or args.out is None:
        raise CalfError("--crosswalk FILE takes --out PATH and no --dataset")
    path = routes.crosswalk_route(
        args.crosswalk,
        args.out,
        url=url,
        retries=args.retries,
        backoff=args.backoff,
        timeout=args.timeout,
        redactor=redactor,
    )
    print(f"wrote {path}: {path.stat().st_size} bytes, sha256 {sha256_file(path)}")
    return 0


def _dispatch(args: argparse.Namespace, redactor: Redactor) -> int:
    from calf.download import routes

    if args.verify is not None:
        if args.dataset is not None or args.out is not None:
            raise CalfError("--verify DIR takes no --dataset or --out")
        return _verify(args.verify, args.manifest)
    url = args.url or os.environ.get(URL_ENV) or None
    if args.crosswalk is not None:
        return _crosswalk(args, url, redactor)
    route = _resolve_route(args)
    extract = not args.no_extract
    if route == "local":
        path, manifest = routes.local_route(args.dataset, args.source, args.manifest)
        print(
            f"OK: {manifest['n_cases']} {args.dataset} cases, {manifest['n_files']} files; manifest {path}"
        )
        return 0
    if route == "gated":
        routes.gated_route(args.dataset, args.out)  # always raises AccessNeeded
    elif route == "synapse":
        manifest = routes.synapse_route(
            args.out, entity=args.entity, extract=extract, redactor=redactor
        )
    elif route == "aspera":
        manifest = routes.aspera_route(
            args.dataset, url, args.out, extract=extract, redactor=redactor
        )
    else:
        if not url:
            raise CalfError(f"--route http needs --url URL (or ${URL_ENV})")
        sha256 = None
        if args.sha256:
            from calf.download.http import check_sha256

            sha256 = check_sha256(args.sha256)
        manifest = routes.http_route(
            args.dataset,
            url,
            args.out,
            sha256=sha256,
            size=args.size,
            retries=args.retries,
            backoff=args.backoff,
            timeout=args.timeout,
            extract=extract,
            redactor=redactor,
        )
    print(
        f"wrote {args.out}: {manifest['n_files']} files, {manifest['total_bytes']} bytes; "
        f"manifest {args.out / 'calf_manifest.json'}"
    )
    print(
        f"check its layout with: calf download --dataset {args.dataset} --route local --source {args.out}[/SUBFOLDER]"
    )
    return 0


def run(args: argparse.Namespace) -> int:
    from calf.download.redact import Redactor
    from calf.download.routes import AccessNeeded

    redactor = Redactor([os.environ.get(SYNAPSE_TOKEN_ENV, "").strip()])
    redactor.add_url(os.environ.get(URL_ENV))
    redactor.add_url(args.url)
    try:
        return _dispatch(args, redactor)
    except AccessNeeded as err:
        print(redactor(err.guidance), file=sys.stderr)
        raise CalfError(redactor(err)) from None
    except CalfError as err:
        raise CalfError(redactor(err)) from None
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        raise CalfError(redactor(f"{where}{err.strerror or err}")) from None
