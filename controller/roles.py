"""Roles, secrets and per-task credentials: what the controller hands to the code in a task.

A role has a name, an ARN and a credential source: `static` keys, `sts-assume-role` (boto3
STS AssumeRole from a base credential, any endpoint) or `process` (AWS `credential_process`
JSON). Secrets are named values for `secrets[].valueFrom` and
`repositoryCredentials.credentialsParameter`, read with the execution role's authority.
Keys and values are write-only: no operation returns them; the store keeps them sealed
(controller.security.sealing) and they travel only in the desired state sent to the one agent
that runs the task. Their operations (CreateRole, PutSecret...) are controller/ops/roles.py.

Credentials are fetched per role (cached and shared), bound to each task under an id derived
from a secret key (HMAC of the task ARN, >= 192 bits, stable across controller restarts
because the container's environment keeps it), refreshed so that what is served always has
more than the SDKs' 15 minutes left (short test durations rotate at half-life), and
dropped when the task stops.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import re
import secrets
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from controller.feed import Change
from controller.model import Task, TaskDefinition, now
from controller.store_api import Put
from dockyard.errors import ApiError, invalid
from dockyard.v1 import agent_pb2

if TYPE_CHECKING:
    from controller.ops.core import Core
    from controller.security.sealing import Sealer

log = logging.getLogger(__name__)

SOURCES = ("static", "sts-assume-role", "process")
ROLE_NAME_RE = re.compile(r"^[\w+=,.@-]{1,64}$")
ROLE_ARN_RE = re.compile(r"^arn:aws[\w-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
SECRET_NAME_RE = re.compile(r"^[\w/+=.@-]{1,512}$")
MAX_SECRET_BYTES = 64 * 1024
SDK_REFRESH_S = 15 * 60  # botocore refreshes this long before Expiration
REFRESH_MARGIN_S = 20 * 60  # we refresh earlier, so the agent never serves less than that
STATIC_LIFETIME_S = 6 * 3600  # static keys never expire: stamp a rolling Expiration
TICK_S = 1.0
KEY_KIND = "rolekey"


@dataclass
class Role:
    name: str
    arn: str
    source: str
    config: dict[str, Any]  # source settings, including keys: never returned by the API
    created_at: float = field(default_factory=now)

    def view(self) -> dict[str, Any]:
        """What list/create return: no keys, no tokens."""
        out: dict[str, Any] = {
            "roleName": self.name,
            "roleArn": self.arn,
            "source": self.source,
            "createdAt": self.created_at,
        }
        for key in ("endpointUrl", "durationSeconds", "region"):
            if self.config.get(key):
                out[key] = self.config[key]
        if self.config.get("externalId"):
            out["externalId"] = "****"
        return out


@dataclass
class Secret:
    name: str
    arn: str
    value: str
    created_at: float = field(default_factory=now)
    updated_at: float = field(default_factory=now)

    def view(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "arn": self.arn,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }


@dataclass
class Issued:
    """Credentials obtained for a role."""

    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: float
    issued_at: float

    def due(self, at: float) -> bool:
        """True when it is time to fetch new ones (see REFRESH_MARGIN_S)."""
        lifetime = self.expiration - self.issued_at
        margin = REFRESH_MARGIN_S if lifetime > 2 * REFRESH_MARGIN_S else lifetime / 2
        return self.expiration - at <= margin


class CredentialError(Exception):
    """A source could not produce credentials; str() is fit for an operator."""


# ---------------------------------------------------------------- sources (blocking I/O)


def fetch(role: Role) -> Issued:
    """Obtain credentials from the role's source. Blocking: call it in a thread."""
    c, at = role.config, time.time()
    if role.source == "static":
        return Issued(
            c["accessKeyId"],
            c["secretAccessKey"],
            c.get("sessionToken", ""),
            at + STATIC_LIFETIME_S,
            at,
        )
    if role.source == "sts-assume-role":
        return _assume_role(role, at)
    return _credential_process(c["command"], at)


def _assume_role(role: Role, at: float) -> Issued:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    c = role.config
    sts = boto3.client(
        "sts",
        region_name=c.get("region") or "us-east-1",
        endpoint_url=c.get("endpointUrl") or None,
        aws_access_key_id=c["accessKeyId"],
        aws_secret_access_key=c["secretAccessKey"],
        aws_session_token=c.get("sessionToken") or None,
        config=Config(
            connect_timeout=5,
            read_timeout=10,
            retries={"max_attempts": 2},
            # botocore refuses DurationSeconds < 900 itself; let the endpoint decide
            # (AWS refuses it, moto allows the short lifetimes tests rotate with)
            parameter_validation=int(c.get("durationSeconds") or 3600) >= 900,
        ),
    )
    args: dict[str, Any] = {
        "RoleArn": role.arn,
        "RoleSessionName": f"dockyard-{role.name}"[:64],
        "DurationSeconds": int(c.get("durationSeconds") or 3600),
    }
    if c.get("externalId"):
        args["ExternalId"] = c["externalId"]
    try:
        creds = sts.assume_role(**args)["Credentials"]
    except (BotoCoreError, ClientError) as err:
        raise CredentialError(f"STS AssumeRole of {role.arn} failed: {err}") from None
    exp = creds["Expiration"]
    return Issued(
        creds["AccessKeyId"],
        creds["SecretAccessKey"],
        creds.get("SessionToken", ""),
        exp.timestamp() if isinstance(exp, datetime) else float(exp),
        at,
    )


def _credential_process(command: str, at: float) -> Issued:
    try:
        out = subprocess.run(
            shlex.split(command), capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise CredentialError(f"credential process {command!r} could not run: {err}") from None
    if out.returncode != 0:
        raise CredentialError(
            f"credential process exited {out.returncode}: {out.stderr.strip()[:200]}"
        )
    try:
        doc = json.loads(out.stdout)
        if doc.get("Version") != 1:
            raise ValueError("Version must be 1")
        exp = doc.get("Expiration")
        expiration = (
            datetime.fromisoformat(exp.replace("Z", "+00:00")).timestamp()
            if exp
            else at + STATIC_LIFETIME_S
        )
        return Issued(
            doc["AccessKeyId"], doc["SecretAccessKey"], doc.get("SessionToken", ""), expiration, at
        )
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise CredentialError(f"credential process printed no credential JSON ({err})") from None


# ---------------------------------------------------------------- pure parsing


def body_text(body: dict[str, Any], key: str, required: bool = False) -> str:
    """A string member of a request body ("" when absent or null), named when it is not."""
    value = body.get(key, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise invalid(key, "must be a string")
    if required and not value:
        raise invalid(key, "is required")
    return value


def parse_role(body: dict[str, Any], account: str) -> Role:
    """A CreateRole request -> Role (validated, nothing fetched yet)."""
    name = body_text(body, "roleName", required=True)
    if not ROLE_NAME_RE.match(name):
        raise invalid("roleName", "1-64 letters, digits and +=,.@_-")
    arn = body_text(body, "roleArn") or f"arn:aws:iam::{account}:role/{name}"
    if not ROLE_ARN_RE.match(arn):
        raise invalid("roleArn", "must look like arn:aws:iam::123456789012:role/NAME")
    source = body_text(body, "source") or "static"
    if source not in SOURCES:
        raise invalid("source", f"must be one of {', '.join(SOURCES)}")
    config: dict[str, Any] = {}
    if source in ("static", "sts-assume-role"):
        config["accessKeyId"] = body_text(body, "accessKeyId", required=True)
        config["secretAccessKey"] = body_text(body, "secretAccessKey", required=True)
        config["sessionToken"] = body_text(body, "sessionToken")
    if source == "sts-assume-role":
        for key in ("endpointUrl", "externalId", "region"):
            config[key] = body_text(body, key)
        if config["endpointUrl"] and not re.match(r"^https?://", config["endpointUrl"]):
            raise invalid("endpointUrl", "must be an http:// or https:// URL")
        duration = body.get("durationSeconds", 3600)
        if isinstance(duration, bool) or not isinstance(duration, int) or not 5 <= duration:
            raise invalid("durationSeconds", "must be an integer of at least 5 (STS: 900-43200)")
        config["durationSeconds"] = duration
    if source == "process":
        config["command"] = body_text(body, "command", required=True)
        try:
            shlex.split(config["command"])
        except ValueError as err:
            raise invalid("command", f"cannot be parsed: {err}") from None
    return Role(name=name, arn=arn, source=source, config=config)


def secret_name(value_from: str) -> tuple[str, str]:
    """`valueFrom` -> (secret name, JSON key or ""): a name, a Secrets Manager ARN
    (`...:secret:NAME[:json-key:...]`) or an SSM parameter ARN (`...:parameter/NAME`)."""
    if value_from.startswith("arn:"):
        if ":secret:" in value_from:
            parts = value_from.split(":secret:", 1)[1].split(":")
            return parts[0], parts[1] if len(parts) > 1 else ""
        if ":parameter/" in value_from:
            return value_from.split(":parameter/", 1)[1], ""
    return value_from, ""


def task_role_arn(task: Task, td: TaskDefinition) -> str:
    return str(task.overrides.get("taskRoleArn") or td.doc.get("taskRoleArn") or "")


def execution_role_arn(task_overrides: dict[str, Any], td: TaskDefinition) -> str:
    return str(task_overrides.get("executionRoleArn") or td.doc.get("executionRoleArn") or "")


def registry_server(image: str) -> str:
    """The registry part of an image reference ('' for Docker Hub)."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return ""


def _secret_refs(named: Any, field: str) -> list[tuple[str, Any]]:
    """(field of each valueFrom, the reference) for secrets or log secretOptions."""
    return [
        (f"{field}[{j}].valueFrom", s.get("valueFrom") if isinstance(s, dict) else None)
        for j, s in enumerate(named or [])
    ]


@dataclass
class TaskExtras:
    """What a task's desired state carries beyond its definition."""

    credentials: agent_pb2.Credentials | None = None
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)  # container -> env
    registry_auth: dict[str, agent_pb2.RegistryAuth] = field(default_factory=dict)
    log_options: dict[str, dict[str, str]] = field(default_factory=dict)  # secretOptions


# ---------------------------------------------------------------- the service


class RoleService:
    """Roles and secrets (their operations are controller/ops/roles.py's functions, which
    write through this), and the task credentials they issue. Takes the `Core` only: it
    imports nothing of the operations."""

    def __init__(self, service: Core) -> None:
        self.service = service  # the Core (record, store, events, ARNs, feed) it writes through
        self.roles = service.record.roles  # by ARN: the state of record holds them
        self.secrets = service.record.secrets  # by name
        self.cache: dict[str, Issued] = {}  # role ARN -> current credentials
        self._key = b""
        self._locks: dict[str, asyncio.Lock] = {}
        self._failed: dict[str, float] = {}  # role ARN -> when a refresh last failed
        self._restarted = True  # roles loaded from the store have no credentials yet
        self.sealer: Sealer | None = None  # set by load(): secret fields are stored sealed
        service.feed.subscribe(("role",), self._on_roles)  # committed role changes

    # ------------------------------------------------------------ persistence

    async def load(self, sealer: Sealer) -> None:
        """Take roles, secrets and the credentials-id key from the state of record's loader
        (opened with `sealer`); a new store gets its key now."""
        record, self.sealer = self.service.record, sealer
        for doc in sealer.open_rows("role", record.take("role")):
            self.roles[doc["arn"]] = Role(**doc)
        for doc in sealer.open_rows("secret", record.take("secret")):
            self.secrets[doc["name"]] = Secret(**doc)
        keys = sealer.open_rows(KEY_KIND, record.take(KEY_KIND))
        if keys:
            self._key = base64.b64decode(keys[0]["key"])
        else:
            self._key = secrets.token_bytes(32)
            key = base64.b64encode(self._key).decode()
            await record.commit([sealer.put(KEY_KIND, "binding", {"key": key})])

    def sealed(self, kind: str, key: str, doc: dict[str, Any]) -> Put:
        """The store record of a role or secret, its keys and value sealed."""
        assert self.sealer is not None, "load() first"
        return self.sealer.put(kind, key, doc)

    def credentials_id(self, task_arn: str) -> str:
        """The task's unguessable credentials id: HMAC-SHA256 of its ARN, 192 bits shown."""
        digest = hmac.new(self._key, task_arn.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:24]).decode()

    # ------------------------------------------------------------ lookups

    def role(self, ref: str) -> Role | None:
        """By ARN, or by name (ECS accepts a role's short name too)."""
        if ref in self.roles:
            return self.roles[ref]
        name = ref.rsplit("/", 1)[-1]
        return next((r for r in self.roles.values() if r.name == name), None)

    def secret(self, value_from: str) -> tuple[Secret | None, str]:
        name, json_key = secret_name(value_from)
        found = self.secrets.get(name) or self.secrets.get(name.lstrip("/"))
        return found, json_key

    def secret_value(self, value_from: str) -> str | None:
        found, json_key = self.secret(value_from)
        if found is None:
            return None
        if not json_key:
            return found.value
        try:
            value = json.loads(found.value)[json_key]
        except (ValueError, KeyError, TypeError):
            return None
        return value if isinstance(value, str) else json.dumps(value)

    # ------------------------------------------------------------ RunTask

    async def check_task(self, td: TaskDefinition, overrides: dict[str, Any]) -> None:
        """Refuse a task whose roles or secrets do not exist; have its credentials ready."""
        role_ref = str(overrides.get("taskRoleArn") or td.doc.get("taskRoleArn") or "")
        exec_ref = execution_role_arn(overrides, td)
        field_of = "overrides.executionRoleArn" if "executionRoleArn" in overrides else None
        if exec_ref and self.role(exec_ref) is None:
            raise invalid(
                field_of or "executionRoleArn", f"no role {exec_ref} (dockyard roles create)"
            )
        self._check_secrets(td, bool(exec_ref))
        if not role_ref:
            return
        role = self.role(role_ref)
        if role is None:
            where = "overrides.taskRoleArn" if "taskRoleArn" in overrides else "taskRoleArn"
            raise invalid(where, f"no role {role_ref} (dockyard roles create)")
        try:
            await self._ensure(role)
        except CredentialError as err:
            raise invalid("taskRoleArn", f"cannot obtain credentials: {err}") from None

    def _check_secrets(self, td: TaskDefinition, has_exec_role: bool) -> None:
        for i, c in enumerate(td.doc["containerDefinitions"]):
            f = f"containerDefinitions[{i}]"
            refs = _secret_refs(c.get("secrets"), f"{f}.secrets")
            refs += _secret_refs(
                (c.get("logConfiguration") or {}).get("secretOptions"),
                f"{f}.logConfiguration.secretOptions",
            )
            repo = c.get("repositoryCredentials")
            if repo:
                param = repo.get("credentialsParameter") if isinstance(repo, dict) else None
                refs.append((f"{f}.repositoryCredentials.credentialsParameter", param))
            for where, ref in refs:
                if not isinstance(ref, str) or not ref:
                    raise invalid(where, "is required: the name or ARN of a secret")
                if not has_exec_role:
                    raise invalid(
                        "executionRoleArn", f"is required to read {where} (the execution role)"
                    )
                if self.secret_value(ref) is None:
                    raise invalid(where, f"no secret {ref!r} (dockyard secrets put)")
            if repo:
                where = f"{f}.repositoryCredentials.credentialsParameter"
                self._registry_login(str(repo["credentialsParameter"]), where)

    def _registry_login(self, ref: str, where: str) -> tuple[str, str]:
        try:
            doc = json.loads(self.secret_value(ref) or "")
            return str(doc["username"]), str(doc["password"])
        except (ValueError, KeyError, TypeError):
            raise invalid(
                where, f'secret {ref!r} must hold JSON {{"username": ..., "password": ...}}'
            ) from None

    # ------------------------------------------------------------ binding (pure, sync)

    def extras(self, task: Task, td: TaskDefinition) -> TaskExtras:
        """Credentials, secrets and registry logins for one task's desired state."""
        out = TaskExtras()
        if task.last_status == "STOPPED":
            return out  # revoked: the agent drops what it served
        arn = task_role_arn(task, td)
        role = self.role(arn) if arn else None
        issued = self.cache.get(role.arn) if role else None
        if role is not None and issued is not None:
            out.credentials = agent_pb2.Credentials(
                id=self.credentials_id(task.arn),
                role_arn=role.arn,
                access_key_id=issued.access_key_id,
                secret_access_key=issued.secret_access_key,
                session_token=issued.session_token,
                expiration=issued.expiration,
            )
        exec_ok = self.role(execution_role_arn(task.overrides, td) or "\0") is not None
        if exec_ok:
            self._secrets_for(td, out)
        return out

    def _resolved(self, named: list[dict[str, Any]] | None) -> dict[str, str]:
        """[{name, valueFrom}] -> {name: secret value} (secrets and log secretOptions)."""
        out = {}
        for s in named or []:
            value = self.secret_value(str(s.get("valueFrom", "")))
            if value is not None and s.get("name"):
                out[str(s["name"])] = value
        return out

    def _secrets_for(self, td: TaskDefinition, out: TaskExtras) -> None:
        for c in td.doc["containerDefinitions"]:
            env = self._resolved(c.get("secrets"))
            if env:
                out.secrets[c["name"]] = env
            log_options = self._resolved((c.get("logConfiguration") or {}).get("secretOptions"))
            if log_options:
                out.log_options[c["name"]] = log_options
            repo = c.get("repositoryCredentials") or {}
            with contextlib.suppress(ApiError):
                if repo.get("credentialsParameter"):
                    user, password = self._registry_login(repo["credentialsParameter"], "")
                    out.registry_auth[c["name"]] = agent_pb2.RegistryAuth(
                        username=user, password=password, server=registry_server(c["image"])
                    )

    # ------------------------------------------------------------ refresh

    def _on_roles(self, changes: list[Change]) -> None:
        """A deleted role's credentials are forgotten once the delete is committed (by this
        controller or, on a replicated store, another): never served or refreshed again."""
        for c in changes:
            if c.new is None and c.key not in self.roles:  # not re-created meanwhile
                self.cache.pop(c.key, None)
                self._failed.pop(c.key, None)
                self._locks.pop(c.key, None)

    async def _ensure(self, role: Role, force: bool = False) -> Issued:
        """The role's credentials, fetched once at a time (callers share one fetch)."""
        lock = self._locks.setdefault(role.arn, asyncio.Lock())
        async with lock:
            issued = self.cache.get(role.arn)
            if issued is None or issued.due(time.time()) or force:
                issued = await asyncio.to_thread(fetch, role)
                self.cache[role.arn] = issued
                self._failed.pop(role.arn, None)
            return issued

    def active_task_roles(self) -> list[tuple[Task, str]]:
        out = []
        taskdefs = self.service.state.taskdefs
        for t in self.service.state.tasks.values():
            if t.active:
                td = taskdefs.get(t.family, {}).get(t.revision)
                if td is not None:
                    role = self.role(task_role_arn(t, td)) if task_role_arn(t, td) else None
                    if role is not None:
                        out.append((t, role.arn))
        return out

    async def refresh_once(self, at: float | None = None) -> list[str]:
        """Fetch new credentials for every role in use that is due; tell the agents.

        Returns the ARNs of the roles refreshed."""
        at = time.time() if at is None else at
        due = self._due(at)
        if not due:
            return []  # the usual case: no scan of every task each tick
        users: dict[str, list[Task]] = {}
        for task, arn in self.active_task_roles():
            if arn in due:
                users.setdefault(arn, []).append(task)
        refreshed = []
        for arn, tasks in users.items():
            try:
                await self._ensure(self.roles[arn])
            except CredentialError as err:
                self._failed[arn] = at
                log.warning("refreshing credentials of %s failed: %s", arn, err)
                continue
            self._failed.pop(arn, None)
            refreshed.append(arn)
            self.service.notify_agents(tasks)
        return refreshed

    def _due(self, at: float) -> set[str]:
        """Roles whose tasks need new credentials now: issued ones near expiry, failed ones
        after a 5 s back-off (the old credentials are still served meanwhile) and, once after
        a restart, all roles (tasks loaded from the store may use them). A role never issued
        otherwise has no tasks: RunTask fetches credentials before it places one."""
        due = {arn for arn, issued in self.cache.items() if issued.due(at)}
        due.update(arn for arn, failed in self._failed.items() if at - failed >= 5)
        if self._restarted:
            self._restarted = False
            due.update(arn for arn in self.roles if arn not in self.cache)
        return {arn for arn in due if arn in self.roles and at - self._failed.get(arn, 0.0) >= 5}

    async def run(self) -> None:
        """The refresh loop (started by the controller)."""
        while True:
            try:
                await self.refresh_once()
            except Exception:
                log.exception("credential refresh pass failed")
            await asyncio.sleep(TICK_S)
