"""What every operator command shares: the global flags, a client bound to them, short-id
resolution, paging, and waiting on a condition.

Handlers take a `Ctx` and the parsed args and return an exit code; an ApiError (from the
controller or raised here for bad flags) is printed by dockyard.cli.main as `Name: message`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from dockyard import auth, reach
from dockyard.arns import last_part
from dockyard.client import Client, controller_address
from dockyard.errors import ApiError, invalid

T = TypeVar("T")
Handler = Callable[["Ctx", argparse.Namespace], int]
SubParsers = argparse._SubParsersAction  # type: ignore[type-arg]
TASK_ID_LEN = 32
DESCRIBE_BATCH = 100
BROKEN_PIPE_EXIT = 141  # 128 + SIGPIPE, as a shell reports a killed writer


def common_flags() -> argparse.ArgumentParser:
    """The flags every operator command takes, placed after the command name."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("global flags")
    g.add_argument(
        "--controller",
        metavar="ADDR",
        default=None,
        help="controller gRPC address (default $DOCKYARD_CONTROLLER or 127.0.0.1:7070)",
    )
    g.add_argument(
        "--cluster",
        metavar="NAME",
        default=os.environ.get("DOCKYARD_CLUSTER", "default"),
        help="cluster name or ARN (default $DOCKYARD_CLUSTER or %(default)s)",
    )
    g.add_argument(
        "--output",
        "-o",
        choices=("table", "json"),
        default="table",
        help="table (default) or json: ECS's JSON as the controller returned it",
    )
    return p


COMMON = common_flags()


@dataclass
class Ctx:
    client: Client
    address: str
    cluster: str
    output: str

    @property
    def json(self) -> bool:
        return self.output == "json"

    def call(self, operation: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """An ECS operation in this command's cluster."""
        return self.client.call(operation, {"cluster": self.cluster, **(body or {})})


SIGNATURE_ERRORS = (
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "IncompleteSignatureException",
    "AccessDeniedException",
)


def _signed_with(creds: auth.Credentials | None) -> str:
    """Which key the CLI used and where it found it (never the secret)."""
    if creds is None:
        return (
            f"the CLI found no access key in ${auth.ACCESS_KEY_ENV} or "
            f"{auth.default_credentials_file()} {reach.SEE_ENV}"
        )
    return (
        f"the CLI signed with access key {creds.access_key_id} from "
        f"{creds.source or 'its caller'} {reach.SEE_ENV}"
    )


def explained(err: ApiError, client: Client) -> ApiError:
    """`err` with what the user can do about it: an unreachable or mis-dialled controller
    told apart by a probe, a refused signature naming the key used and its source."""
    if err.name == "ConnectionError":
        detail = err.message.removeprefix("controller unreachable: ")
        return ApiError(err.name, reach.explain(client.address, client.ca_cert, detail), err.status)
    if err.name in SIGNATURE_ERRORS:
        message = f"{err.message}; {_signed_with(client.credentials)}"
        return ApiError(err.name, message, err.status)
    return err


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def warn_stale(since: str) -> None:
    """One warning line per stale answer (controller.stale_reads), on stderr: stdout stays
    the answer, parseable as ever."""
    print(
        f"warning: stale answer: etcd has no quorum; this is the controller's memory of the "
        f"state as of {since} (writes are refused until etcd has a quorum again)",
        file=sys.stderr,
    )


def bind(fn: Handler) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        address = controller_address(args.controller)
        client = Client(address)
        client.on_stale = warn_stale
        try:
            return fn(Ctx(client, address, args.cluster, args.output), args)
        except ApiError as err:
            raise explained(err, client) from None
        except BrokenPipeError:  # `dockyard events | head`: stop quietly, like other tools
            _silence_stdout()
            return BROKEN_PIPE_EXIT
        finally:
            client.close()

    return run


def group(sub: SubParsers, name: str, help_text: str, description: str = "") -> SubParsers:
    """A command group (`dockyard tasks ...`); without a verb it prints its help."""
    p = sub.add_parser(name, help=help_text, description=description or help_text)
    verbs = p.add_subparsers(dest=f"{name}_verb", metavar="VERB")
    p.set_defaults(handler=lambda _a: (p.print_help(), 2)[1])
    return verbs


def command(
    sub: SubParsers, name: str, fn: Handler, help_text: str, description: str = ""
) -> argparse.ArgumentParser:
    """A leaf command with the global flags, bound to `fn(ctx, args)`."""
    p = sub.add_parser(name, help=help_text, description=description or help_text, parents=[COMMON])
    p.set_defaults(handler=bind(fn))
    return p


# ---------------------------------------------------------------- paging and batches


def list_all(ctx: Ctx, operation: str, key: str, body: dict[str, Any] | None = None) -> list[Any]:
    """Every page of a List* operation."""
    out: list[Any] = []
    token = None
    while True:
        page = ctx.call(operation, {**(body or {}), **({"nextToken": token} if token else {})})
        out += page.get(key, [])
        token = page.get("nextToken")
        if not token:
            return out


def describe_all(
    ctx: Ctx, operation: str, field: str, key: str, refs: list[str], batch: int = DESCRIBE_BATCH
) -> dict[str, list[Any]]:
    """A Describe* operation over any number of refs, in batches; replies merged."""
    found: list[Any] = []
    failures: list[Any] = []
    for i in range(0, len(refs), batch):
        reply = ctx.call(operation, {field: refs[i : i + batch]})
        found += reply.get(key, [])
        failures += reply.get("failures", [])
    return {key: found, "failures": failures}


# ---------------------------------------------------------------- short ids


def resolve_task(ctx: Ctx, ref: str) -> str:
    """A full ARN or id as is; a unique id prefix (as tables show) -> the task's ARN."""
    if ref.startswith("arn:") or len(ref) >= TASK_ID_LEN:
        return ref
    arns = [
        arn
        for status in ("RUNNING", "STOPPED")
        for arn in list_all(ctx, "ListTasks", "taskArns", {"desiredStatus": status})
    ]
    return _unique(ref, [a for a in arns if last_part(a).startswith(ref)], "task") or ref


def resolve_instance(ctx: Ctx, ref: str) -> str:
    """A full ARN or id as is; an id prefix or a hostname (dockyard.hostname) -> its ARN."""
    if ref.startswith("arn:"):
        return ref
    arns = list_all(ctx, "ListContainerInstances", "containerInstanceArns")
    ids = {last_part(a): a for a in arns}
    if ref in ids:
        return ids[ref]
    hit = _unique(ref, [a for i, a in ids.items() if i.startswith(ref)], "container instance")
    if hit or not arns:
        return hit or ref
    described = describe_all(
        ctx, "DescribeContainerInstances", "containerInstances", "containerInstances", arns
    )["containerInstances"]
    named = [
        ci["containerInstanceArn"] for ci in described if attribute(ci, "dockyard.hostname") == ref
    ]
    return _unique(ref, named, "container instance") or ref


def _unique(ref: str, matches: list[str], what: str) -> str | None:
    if len(matches) > 1:
        ids = ", ".join(last_part(m) for m in matches[:5])
        raise invalid(what, f"{ref!r} matches {len(matches)} of them ({ids}); give more of the id")
    return matches[0] if matches else None


def attribute(instance: dict[str, Any], name: str) -> str | None:
    for a in instance.get("attributes", []):
        if a.get("name") == name:
            return str(a.get("value", ""))
    return None


# ---------------------------------------------------------------- waiting


def poll(check: Callable[[], T | None], timeout: float, what: str, max_interval: float = 1.0) -> T:
    """Call check until it returns something truthy; growing intervals up to max_interval."""
    deadline = time.monotonic() + timeout
    interval = 0.1
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise ApiError("TimeoutError", f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
        interval = min(interval * 1.5, max_interval)


def pairs(items: list[str], flag: str) -> Iterator[tuple[str, str]]:
    """`NAME=VALUE` arguments; a missing `=` is refused naming the flag."""
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise invalid(flag, f"wants NAME=VALUE, got {item!r}")
        yield name, value
