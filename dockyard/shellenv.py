"""The exports a shell needs to talk to one cluster: `dockyard env` and `dockyard lab env`.

After `eval "$(dockyard env)"` both the CLI (DOCKYARD_*) and unmodified AWS tools (the aws
CLI, boto3) reach the same controller with no extra arguments: botocore (>= 1.31) reads the
ECS endpoint from AWS_ENDPOINT_URL_ECS (Cloud Map's from AWS_ENDPOINT_URL_SERVICEDISCOVERY,
Application Auto Scaling's from AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING, EventBridge's
from AWS_ENDPOINT_URL_EVENTBRIDGE: the same endpoint), the CA from AWS_CA_BUNDLE and the
key from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. Variables that would make those tools
use something else (another profile, a session token, a stale CA) are unset.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from dockyard import auth, endpoints

STALE_AWS = (
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",  # would make aws and boto3 skip AWS_ENDPOINT_URL_ECS
)


class EnvError(Exception):
    """The cluster cannot be described: what is missing and where it was looked for."""


@dataclass(frozen=True)
class Target:
    """One cluster as a client sees it."""

    controller: str
    ecs_url: str
    region: str
    ca_cert: Path | None  # the cluster CA: the CLI's under grpc_tls, aws's for an https URL
    credentials: auth.Credentials | None
    grpc_tls: bool = False  # the gRPC port serves TLS

    @property
    def https(self) -> bool:
        return self.ecs_url.startswith("https://")


def from_data_dir(
    data_dir: Path, default: endpoints.Endpoints | None = None, ca_cert: Path | None = None
) -> Target:
    """The cluster whose controller keeps its state in `data_dir` (its admin key, its CA,
    the endpoints it announced; `default` when it never announced any). `ca_cert`: a
    readable copy of the CA to point clients at instead of the data dir's."""
    found = endpoints.read(data_dir) or default
    if found is None:
        raise EnvError(
            f"{data_dir / endpoints.FILE} not found: is {data_dir} a controller's data dir "
            "and has that controller started? (or give --controller and --endpoint-url)"
        )
    creds_path = data_dir / endpoints.CREDENTIALS_FILE
    creds = auth.load_credentials(env={}, path=creds_path)
    if creds is None:
        raise EnvError(f"cannot read the admin key in {creds_path} (run this as its owner)")
    ca = ca_cert or data_dir / endpoints.CA_FILE
    tls = found.tls or found.ecs_url.startswith("https://")
    return Target(
        found.controller, found.ecs_url, found.region, ca if tls else None, creds, found.tls
    )


def _line(verb: str, pairs: list[tuple[str, str]]) -> str:
    return verb + " " + " ".join(f"{k}={shlex.quote(v)}" for k, v in pairs)


def exports(t: Target, extra: list[tuple[str, str]] | None = None) -> str:
    """Shell lines (POSIX sh) setting up the Dockyard CLI and the AWS tools for `t`."""
    out = [_line("export", [("DOCKYARD_CONTROLLER", t.controller), *(extra or [])])]
    unset: list[str] = list(STALE_AWS)
    if t.credentials is not None:
        key, secret = t.credentials.access_key_id, t.credentials.secret_access_key
        out.append(_line("export", [(auth.ACCESS_KEY_ENV, key), (auth.SECRET_KEY_ENV, secret)]))
        out.append(_line("export", [("AWS_ACCESS_KEY_ID", key), ("AWS_SECRET_ACCESS_KEY", secret)]))
    aws = [("AWS_ENDPOINT_URL_ECS", t.ecs_url), ("AWS_DEFAULT_REGION", t.region)]
    # Cloud Map (issue 21) is served on the same endpoint; its DiscoverInstances would go to
    # `data-<host>` (the model's host prefix) unless injection is off
    aws.append(("AWS_ENDPOINT_URL_SERVICEDISCOVERY", t.ecs_url))
    aws.append(("AWS_DISABLE_HOST_PREFIX_INJECTION", "true"))
    # Application Auto Scaling (issue 22) is served on the same endpoint
    aws.insert(1, ("AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING", t.ecs_url))
    # and EventBridge's scheduled rules (issue 22): botocore reads the variable named after
    # the service id (EventBridge); AWS_ENDPOINT_URL_EVENTS (the endpoint prefix's name,
    # which botocore ignores) is set too, for tools and scripts that look for it
    aws.insert(2, ("AWS_ENDPOINT_URL_EVENTBRIDGE", t.ecs_url))
    aws.insert(3, ("AWS_ENDPOINT_URL_EVENTS", t.ecs_url))
    aws.append(("AWS_REGION", t.region))
    out.append(_line("export", aws))
    ca = str(t.ca_cert.resolve()) if t.ca_cert else ""
    cas = [(auth.CA_CERT_ENV, t.grpc_tls), ("AWS_CA_BUNDLE", t.https)]
    if ca and any(on for _, on in cas):
        out.append(_line("export", [(name, ca) for name, on in cas if on]))
    unset += [name for name, on in cas if not (ca and on)]
    out.append("unset " + " ".join(unset))
    return "\n".join(out) + "\n"


def public_copy(ca: Path, into: Path) -> Path:
    """A world-readable copy of the CA certificate (public data) in `into`, for shells of
    users who cannot enter the controller's 0700 data dir (`sudo dockyard lab env`)."""
    target = into / endpoints.CA_FILE
    data = ca.read_bytes()
    if not target.exists() or target.read_bytes() != data:
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(data)
        tmp.chmod(0o644)
        tmp.replace(target)
    return target
