"""ECS account settings: PutAccountSetting, PutAccountSettingDefault, ListAccountSettings,
DeleteAccountSetting.

Dockyard has no IAM: every caller acts as the account's root user, so a setting put without
`principalArn` is the root user's, which is also the account default (as ECS's
PutAccountSettingDefault). Settings for IAM users and roles of this account are kept and
listed as ECS does (a principal's own setting, else the root user's, else ECS's default).

Settings are stored (kind "account_setting") and survive restarts. Most change nothing in
Dockyard (README, "Account settings"); the values Dockyard could not honour are refused:
the long ARN formats cannot be disabled (Dockyard, like ECS since 2021, always writes long
ARNs) and `defaultLogDriverMode` only takes `blocking` (Docker's mode, which Dockyard uses).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from controller.ecs_paging import paginate
from controller.store_api import Delete, Put
from dockyard.arns import ArnFactory
from dockyard.errors import invalid

if TYPE_CHECKING:
    from controller.state_of_record import StateOfRecord

KIND = "account_setting"
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]

# name -> (ECS's default, the values Dockyard accepts, the values ECS knows)
_ON_OFF = ("enabled", "disabled")
SETTINGS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "serviceLongArnFormat": ("enabled", ("enabled",), _ON_OFF),
    "taskLongArnFormat": ("enabled", ("enabled",), _ON_OFF),
    "containerInstanceLongArnFormat": ("enabled", ("enabled",), _ON_OFF),
    "awsvpcTrunking": ("disabled", _ON_OFF, _ON_OFF),
    "containerInsights": ("disabled", ("enhanced", *_ON_OFF), ("enhanced", *_ON_OFF)),
    "fargateFIPSMode": ("disabled", _ON_OFF, _ON_OFF),
    "tagResourceAuthorization": ("on", ("on", "off"), ("on", "off")),
    "fargateTaskRetirementWaitPeriod": ("7", ("0", "7", "14"), ("0", "7", "14")),
    "guardDutyActivate": ("off", (), ("on", "off")),
    "defaultLogDriverMode": ("blocking", ("blocking",), ("blocking", "non-blocking")),
    "fargateEventWindows": ("disabled", _ON_OFF, _ON_OFF),
}
AWS_MANAGED = frozenset({"guardDutyActivate"})  # ECS: read-only, AWS sets it
ROOT_ONLY = frozenset({"fargateTaskRetirementWaitPeriod", "fargateFIPSMode"})
_WHY_NOT = {
    "serviceLongArnFormat": "Dockyard always uses the long ARN format (ECS's only one since 2021)",
    "taskLongArnFormat": "Dockyard always uses the long ARN format (ECS's only one since 2021)",
    "containerInstanceLongArnFormat": "Dockyard always uses the long ARN format",
    "defaultLogDriverMode": "Dockyard's containers log in Docker's blocking mode only",
}
_PRINCIPAL = re.compile(r"arn:aws:iam::(\d{12}):(root|user/[\w+=,.@/-]+|role/[\w+=,.@/-]+)")


class AccountSettings:
    """The account's settings, cached in memory and written through to the store."""

    def __init__(self, record: StateOfRecord, arns: ArnFactory) -> None:
        self.record = record
        self.arns = arns
        self.root = f"arn:aws:iam::{arns.account}:root"
        self._values = record.account_settings  # (principal, name) -> value
        self._loaded = False
        self._lock = asyncio.Lock()

    def handlers(self) -> dict[str, Handler]:
        return {
            "PutAccountSetting": self.put,
            "PutAccountSettingDefault": self.put_default,
            "ListAccountSettings": self.list_settings,
            "DeleteAccountSetting": self.delete,
        }

    async def load(self) -> None:
        """Take the stored settings once (the first call that needs them) from the state of
        record's loader."""
        async with self._lock:
            if self._loaded:
                return
            for doc in self.record.docs(KIND):
                self._values[(doc["principalArn"], doc["name"])] = doc["value"]
            self._loaded = True

    async def effective(self, name: str, principal: str = "") -> str:
        """The value that applies to `principal` (root when empty): own, root's, default."""
        await self.load()
        return self._effective(name, principal or self.root)[0]

    def _effective(self, name: str, principal: str) -> tuple[str, str]:
        """(value, whose setting it is) for `principal`."""
        for who in (principal, self.root):
            if (who, name) in self._values:
                return self._values[(who, name)], who
        return SETTINGS[name][0], self.root

    def _principal(self, body: dict[str, Any]) -> str:
        arn = body.get("principalArn") or self.root
        match = _PRINCIPAL.fullmatch(arn)
        if match is None:
            raise invalid(
                "principalArn",
                "must be the ARN of an IAM user, role or the root user "
                "(arn:aws:iam::<account>:root|user/<name>|role/<name>)",
            )
        if match.group(1) != self.arns.account:
            raise invalid(
                "principalArn", f"names account {match.group(1)}, not {self.arns.account}"
            )
        return arn

    def _setting(self, name: str, value: str, principal: str) -> dict[str, str]:
        kind = "aws_managed" if name in AWS_MANAGED else "user"
        return {"name": name, "value": value, "principalArn": principal, "type": kind}

    def _check_value(self, name: str, value: str, principal: str) -> None:
        _, accepted, known = SETTINGS[name]
        if name in AWS_MANAGED:
            raise invalid("name", f"{name} is managed by AWS and cannot be changed")
        if name in ROOT_ONLY and principal != self.root:
            raise invalid("principalArn", f"{name} can only be set for the root user")
        if value not in known:
            raise invalid("value", f"{name} takes {', '.join(known)}, not {value!r}")
        if value not in accepted:
            raise invalid("value", f"{name}={value} is not available: {_WHY_NOT[name]}")

    async def _store(self, name: str, value: str, principal: str) -> dict[str, Any]:
        await self.load()
        self._check_value(name, value, principal)
        doc = self._setting(name, value, principal)
        await self.record.commit([Put(KIND, f"{principal} {name}", "", doc)])
        self._values[(principal, name)] = value
        return {"setting": doc}

    async def put(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._store(_name(body), body["value"], self._principal(body))

    async def put_default(self, body: dict[str, Any]) -> dict[str, Any]:
        """The account default: the root user's setting, which every principal inherits."""
        return await self._store(_name(body), body["value"], self.root)

    async def delete(self, body: dict[str, Any]) -> dict[str, Any]:
        """Drop the principal's own setting; it then inherits the root's or the default.
        Answers with the setting deleted, or (none of its own) the one that applies."""
        await self.load()
        name, principal = _name(body), self._principal(body)
        if name in AWS_MANAGED:
            raise invalid("name", f"{name} is managed by AWS and cannot be changed")
        value = self._values.get((principal, name))
        if value is None:  # nothing of its own: deleting is idempotent, as AWS deletes are
            return {"setting": self._setting(name, *self._effective(name, principal))}
        await self.record.commit([Delete(KIND, f"{principal} {name}")])  # durable, then forgotten
        self._values.pop((principal, name), None)
        return {"setting": self._setting(name, value, principal)}

    async def list_settings(self, body: dict[str, Any]) -> dict[str, Any]:
        await self.load()
        if "value" in body and "name" not in body:
            raise invalid("value", "filters by value only together with name")
        principal = self._principal(body)
        names = [_name(body)] if "name" in body else list(SETTINGS)
        found = []
        for name in names:
            if body.get("effectiveSettings"):
                value, whose = self._effective(name, principal)
            elif (principal, name) in self._values:
                value, whose = self._values[(principal, name)], principal
            else:
                continue
            if body.get("value") in (None, value):
                found.append(self._setting(name, value, whose))
        order = {name: i for i, name in enumerate(SETTINGS)}
        page, token = paginate(
            found,
            body.get("nextToken"),
            body.get("maxResults"),
            key=lambda s: order[s["name"]],
            default=10,
            limit=10,
        )
        return {"settings": page, **({"nextToken": token} if token else {})}


def _name(body: dict[str, Any]) -> str:
    """The request's setting name, one of ECS's (the model's enum is not checked for us)."""
    name = str(body["name"])
    if name not in SETTINGS:
        raise invalid("name", f"{name!r} is not an ECS account setting: {', '.join(SETTINGS)}")
    return name
