from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EnrollRequest(_message.Message):
    __slots__ = ("join_token", "instance_id", "cluster", "csr_pem")
    JOIN_TOKEN_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    join_token: str
    instance_id: str
    cluster: str
    csr_pem: bytes
    def __init__(self, join_token: _Optional[str] = ..., instance_id: _Optional[str] = ..., cluster: _Optional[str] = ..., csr_pem: _Optional[bytes] = ...) -> None: ...

class EnrollReply(_message.Message):
    __slots__ = ("certificate_pem", "ca_pem", "connect_address", "not_after", "instance_id")
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    CA_PEM_FIELD_NUMBER: _ClassVar[int]
    CONNECT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    certificate_pem: bytes
    ca_pem: bytes
    connect_address: str
    not_after: float
    instance_id: str
    def __init__(self, certificate_pem: _Optional[bytes] = ..., ca_pem: _Optional[bytes] = ..., connect_address: _Optional[str] = ..., not_after: _Optional[float] = ..., instance_id: _Optional[str] = ...) -> None: ...

class AgentMessage(_message.Message):
    __slots__ = ("register", "heartbeat", "status", "resync", "log_chunk", "exec_output", "usage", "protection")
    REGISTER_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RESYNC_FIELD_NUMBER: _ClassVar[int]
    LOG_CHUNK_FIELD_NUMBER: _ClassVar[int]
    EXEC_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    PROTECTION_FIELD_NUMBER: _ClassVar[int]
    register: Register
    heartbeat: Heartbeat
    status: StatusBatch
    resync: ResyncRequest
    log_chunk: LogChunk
    exec_output: ExecOutput
    usage: UsageReport
    protection: TaskProtectionRequest
    def __init__(self, register: _Optional[_Union[Register, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., status: _Optional[_Union[StatusBatch, _Mapping]] = ..., resync: _Optional[_Union[ResyncRequest, _Mapping]] = ..., log_chunk: _Optional[_Union[LogChunk, _Mapping]] = ..., exec_output: _Optional[_Union[ExecOutput, _Mapping]] = ..., usage: _Optional[_Union[UsageReport, _Mapping]] = ..., protection: _Optional[_Union[TaskProtectionRequest, _Mapping]] = ...) -> None: ...

class Resources(_message.Message):
    __slots__ = ("cpu", "memory_mib", "reserved_tcp_ports", "reserved_udp_ports", "gpu_ids")
    CPU_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MIB_FIELD_NUMBER: _ClassVar[int]
    RESERVED_TCP_PORTS_FIELD_NUMBER: _ClassVar[int]
    RESERVED_UDP_PORTS_FIELD_NUMBER: _ClassVar[int]
    GPU_IDS_FIELD_NUMBER: _ClassVar[int]
    cpu: int
    memory_mib: int
    reserved_tcp_ports: _containers.RepeatedScalarFieldContainer[int]
    reserved_udp_ports: _containers.RepeatedScalarFieldContainer[int]
    gpu_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, cpu: _Optional[int] = ..., memory_mib: _Optional[int] = ..., reserved_tcp_ports: _Optional[_Iterable[int]] = ..., reserved_udp_ports: _Optional[_Iterable[int]] = ..., gpu_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class Register(_message.Message):
    __slots__ = ("instance_id", "cluster", "hostname", "agent_version", "total", "attributes", "tasks", "join_token", "address", "instance_secret")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    JOIN_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_SECRET_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    cluster: str
    hostname: str
    agent_version: str
    total: Resources
    attributes: _containers.ScalarMap[str, str]
    tasks: _containers.RepeatedCompositeFieldContainer[TaskStatus]
    join_token: str
    address: str
    instance_secret: str
    def __init__(self, instance_id: _Optional[str] = ..., cluster: _Optional[str] = ..., hostname: _Optional[str] = ..., agent_version: _Optional[str] = ..., total: _Optional[_Union[Resources, _Mapping]] = ..., attributes: _Optional[_Mapping[str, str]] = ..., tasks: _Optional[_Iterable[_Union[TaskStatus, _Mapping]]] = ..., join_token: _Optional[str] = ..., address: _Optional[str] = ..., instance_secret: _Optional[str] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("seq", "desired_version", "docker_healthy")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    DESIRED_VERSION_FIELD_NUMBER: _ClassVar[int]
    DOCKER_HEALTHY_FIELD_NUMBER: _ClassVar[int]
    seq: int
    desired_version: int
    docker_healthy: bool
    def __init__(self, seq: _Optional[int] = ..., desired_version: _Optional[int] = ..., docker_healthy: _Optional[bool] = ...) -> None: ...

class StatusBatch(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[TaskStatus]
    def __init__(self, tasks: _Optional[_Iterable[_Union[TaskStatus, _Mapping]]] = ...) -> None: ...

class ResyncRequest(_message.Message):
    __slots__ = ("have_version",)
    HAVE_VERSION_FIELD_NUMBER: _ClassVar[int]
    have_version: int
    def __init__(self, have_version: _Optional[int] = ...) -> None: ...

class ContainerStatus(_message.Message):
    __slots__ = ("name", "docker_id", "restart_count", "gpu_ids", "last_status", "has_exit_code", "exit_code", "reason", "health", "bindings", "image_digest")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DOCKER_ID_FIELD_NUMBER: _ClassVar[int]
    RESTART_COUNT_FIELD_NUMBER: _ClassVar[int]
    GPU_IDS_FIELD_NUMBER: _ClassVar[int]
    LAST_STATUS_FIELD_NUMBER: _ClassVar[int]
    HAS_EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    BINDINGS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    name: str
    docker_id: str
    restart_count: int
    gpu_ids: _containers.RepeatedScalarFieldContainer[str]
    last_status: str
    has_exit_code: bool
    exit_code: int
    reason: str
    health: str
    bindings: _containers.RepeatedCompositeFieldContainer[PortBinding]
    image_digest: str
    def __init__(self, name: _Optional[str] = ..., docker_id: _Optional[str] = ..., restart_count: _Optional[int] = ..., gpu_ids: _Optional[_Iterable[str]] = ..., last_status: _Optional[str] = ..., has_exit_code: _Optional[bool] = ..., exit_code: _Optional[int] = ..., reason: _Optional[str] = ..., health: _Optional[str] = ..., bindings: _Optional[_Iterable[_Union[PortBinding, _Mapping]]] = ..., image_digest: _Optional[str] = ...) -> None: ...

class PortBinding(_message.Message):
    __slots__ = ("container_port", "host_port", "protocol", "bind_ip")
    CONTAINER_PORT_FIELD_NUMBER: _ClassVar[int]
    HOST_PORT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    BIND_IP_FIELD_NUMBER: _ClassVar[int]
    container_port: int
    host_port: int
    protocol: str
    bind_ip: str
    def __init__(self, container_port: _Optional[int] = ..., host_port: _Optional[int] = ..., protocol: _Optional[str] = ..., bind_ip: _Optional[str] = ...) -> None: ...

class TaskStatus(_message.Message):
    __slots__ = ("task_arn", "last_status", "containers", "stop_code", "stopped_reason", "updated_at", "pull_started_at", "pull_stopped_at", "started_at", "event")
    TASK_ARN_FIELD_NUMBER: _ClassVar[int]
    LAST_STATUS_FIELD_NUMBER: _ClassVar[int]
    CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    STOP_CODE_FIELD_NUMBER: _ClassVar[int]
    STOPPED_REASON_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    PULL_STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    PULL_STOPPED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    task_arn: str
    last_status: str
    containers: _containers.RepeatedCompositeFieldContainer[ContainerStatus]
    stop_code: str
    stopped_reason: str
    updated_at: float
    pull_started_at: float
    pull_stopped_at: float
    started_at: float
    event: str
    def __init__(self, task_arn: _Optional[str] = ..., last_status: _Optional[str] = ..., containers: _Optional[_Iterable[_Union[ContainerStatus, _Mapping]]] = ..., stop_code: _Optional[str] = ..., stopped_reason: _Optional[str] = ..., updated_at: _Optional[float] = ..., pull_started_at: _Optional[float] = ..., pull_stopped_at: _Optional[float] = ..., started_at: _Optional[float] = ..., event: _Optional[str] = ...) -> None: ...

class UsageReport(_message.Message):
    __slots__ = ("window_s", "source", "tasks")
    WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    window_s: float
    source: str
    tasks: _containers.RepeatedCompositeFieldContainer[TaskUsage]
    def __init__(self, window_s: _Optional[float] = ..., source: _Optional[str] = ..., tasks: _Optional[_Iterable[_Union[TaskUsage, _Mapping]]] = ...) -> None: ...

class TaskUsage(_message.Message):
    __slots__ = ("task_arn", "containers")
    TASK_ARN_FIELD_NUMBER: _ClassVar[int]
    CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    task_arn: str
    containers: _containers.RepeatedCompositeFieldContainer[ContainerUsage]
    def __init__(self, task_arn: _Optional[str] = ..., containers: _Optional[_Iterable[_Union[ContainerUsage, _Mapping]]] = ...) -> None: ...

class ContainerUsage(_message.Message):
    __slots__ = ("name", "cpu_units", "memory_bytes", "memory_limit_bytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CPU_UNITS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_LIMIT_BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    cpu_units: float
    memory_bytes: int
    memory_limit_bytes: int
    def __init__(self, name: _Optional[str] = ..., cpu_units: _Optional[float] = ..., memory_bytes: _Optional[int] = ..., memory_limit_bytes: _Optional[int] = ...) -> None: ...

class LogChunk(_message.Message):
    __slots__ = ("request_id", "container", "data", "eof", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    EOF_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    container: str
    data: bytes
    eof: bool
    error: str
    def __init__(self, request_id: _Optional[int] = ..., container: _Optional[str] = ..., data: _Optional[bytes] = ..., eof: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class ControllerMessage(_message.Message):
    __slots__ = ("registered", "desired", "heartbeat_ack", "log_request", "log_cancel", "refusal", "exec_start", "exec_input", "dns", "protection_reply")
    REGISTERED_FIELD_NUMBER: _ClassVar[int]
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_ACK_FIELD_NUMBER: _ClassVar[int]
    LOG_REQUEST_FIELD_NUMBER: _ClassVar[int]
    LOG_CANCEL_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    EXEC_START_FIELD_NUMBER: _ClassVar[int]
    EXEC_INPUT_FIELD_NUMBER: _ClassVar[int]
    DNS_FIELD_NUMBER: _ClassVar[int]
    PROTECTION_REPLY_FIELD_NUMBER: _ClassVar[int]
    registered: Registered
    desired: DesiredState
    heartbeat_ack: HeartbeatAck
    log_request: LogRequest
    log_cancel: LogCancel
    refusal: Refusal
    exec_start: ExecStart
    exec_input: ExecInput
    dns: DnsSnapshot
    protection_reply: TaskProtectionReply
    def __init__(self, registered: _Optional[_Union[Registered, _Mapping]] = ..., desired: _Optional[_Union[DesiredState, _Mapping]] = ..., heartbeat_ack: _Optional[_Union[HeartbeatAck, _Mapping]] = ..., log_request: _Optional[_Union[LogRequest, _Mapping]] = ..., log_cancel: _Optional[_Union[LogCancel, _Mapping]] = ..., refusal: _Optional[_Union[Refusal, _Mapping]] = ..., exec_start: _Optional[_Union[ExecStart, _Mapping]] = ..., exec_input: _Optional[_Union[ExecInput, _Mapping]] = ..., dns: _Optional[_Union[DnsSnapshot, _Mapping]] = ..., protection_reply: _Optional[_Union[TaskProtectionReply, _Mapping]] = ...) -> None: ...

class Registered(_message.Message):
    __slots__ = ("instance_arn", "epoch", "heartbeat_period_ms")
    INSTANCE_ARN_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_PERIOD_MS_FIELD_NUMBER: _ClassVar[int]
    instance_arn: str
    epoch: int
    heartbeat_period_ms: int
    def __init__(self, instance_arn: _Optional[str] = ..., epoch: _Optional[int] = ..., heartbeat_period_ms: _Optional[int] = ...) -> None: ...

class HeartbeatAck(_message.Message):
    __slots__ = ("seq", "heartbeat_period_ms")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_PERIOD_MS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    heartbeat_period_ms: int
    def __init__(self, seq: _Optional[int] = ..., heartbeat_period_ms: _Optional[int] = ...) -> None: ...

class Refusal(_message.Message):
    __slots__ = ("code", "message", "fatal")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FATAL_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    fatal: bool
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., fatal: _Optional[bool] = ...) -> None: ...

class DesiredState(_message.Message):
    __slots__ = ("version", "base_version", "full", "tasks", "forget")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    BASE_VERSION_FIELD_NUMBER: _ClassVar[int]
    FULL_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    FORGET_FIELD_NUMBER: _ClassVar[int]
    version: int
    base_version: int
    full: bool
    tasks: _containers.RepeatedCompositeFieldContainer[DesiredTask]
    forget: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, version: _Optional[int] = ..., base_version: _Optional[int] = ..., full: _Optional[bool] = ..., tasks: _Optional[_Iterable[_Union[DesiredTask, _Mapping]]] = ..., forget: _Optional[_Iterable[str]] = ...) -> None: ...

class DesiredTask(_message.Message):
    __slots__ = ("task_arn", "cluster", "family", "revision", "desired_status", "containers", "network_mode", "pid_mode", "ipc_mode", "stop_code", "stopped_reason", "task_role_arn", "credentials", "group", "service", "known_status", "stop_timeout_s", "volumes")
    TASK_ARN_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    DESIRED_STATUS_FIELD_NUMBER: _ClassVar[int]
    CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    NETWORK_MODE_FIELD_NUMBER: _ClassVar[int]
    PID_MODE_FIELD_NUMBER: _ClassVar[int]
    IPC_MODE_FIELD_NUMBER: _ClassVar[int]
    STOP_CODE_FIELD_NUMBER: _ClassVar[int]
    STOPPED_REASON_FIELD_NUMBER: _ClassVar[int]
    TASK_ROLE_ARN_FIELD_NUMBER: _ClassVar[int]
    CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    KNOWN_STATUS_FIELD_NUMBER: _ClassVar[int]
    STOP_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    VOLUMES_FIELD_NUMBER: _ClassVar[int]
    task_arn: str
    cluster: str
    family: str
    revision: int
    desired_status: str
    containers: _containers.RepeatedCompositeFieldContainer[ContainerSpec]
    network_mode: str
    pid_mode: str
    ipc_mode: str
    stop_code: str
    stopped_reason: str
    task_role_arn: str
    credentials: Credentials
    group: str
    service: str
    known_status: str
    stop_timeout_s: int
    volumes: _containers.RepeatedCompositeFieldContainer[VolumeSpec]
    def __init__(self, task_arn: _Optional[str] = ..., cluster: _Optional[str] = ..., family: _Optional[str] = ..., revision: _Optional[int] = ..., desired_status: _Optional[str] = ..., containers: _Optional[_Iterable[_Union[ContainerSpec, _Mapping]]] = ..., network_mode: _Optional[str] = ..., pid_mode: _Optional[str] = ..., ipc_mode: _Optional[str] = ..., stop_code: _Optional[str] = ..., stopped_reason: _Optional[str] = ..., task_role_arn: _Optional[str] = ..., credentials: _Optional[_Union[Credentials, _Mapping]] = ..., group: _Optional[str] = ..., service: _Optional[str] = ..., known_status: _Optional[str] = ..., stop_timeout_s: _Optional[int] = ..., volumes: _Optional[_Iterable[_Union[VolumeSpec, _Mapping]]] = ...) -> None: ...

class VolumeSpec(_message.Message):
    __slots__ = ("name", "host_path", "docker")
    NAME_FIELD_NUMBER: _ClassVar[int]
    HOST_PATH_FIELD_NUMBER: _ClassVar[int]
    DOCKER_FIELD_NUMBER: _ClassVar[int]
    name: str
    host_path: str
    docker: DockerVolume
    def __init__(self, name: _Optional[str] = ..., host_path: _Optional[str] = ..., docker: _Optional[_Union[DockerVolume, _Mapping]] = ...) -> None: ...

class DockerVolume(_message.Message):
    __slots__ = ("scope", "autoprovision", "driver", "driver_opts", "labels")
    class DriverOptsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    AUTOPROVISION_FIELD_NUMBER: _ClassVar[int]
    DRIVER_FIELD_NUMBER: _ClassVar[int]
    DRIVER_OPTS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    scope: str
    autoprovision: bool
    driver: str
    driver_opts: _containers.ScalarMap[str, str]
    labels: _containers.ScalarMap[str, str]
    def __init__(self, scope: _Optional[str] = ..., autoprovision: _Optional[bool] = ..., driver: _Optional[str] = ..., driver_opts: _Optional[_Mapping[str, str]] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Mount(_message.Message):
    __slots__ = ("source_volume", "container_path", "read_only")
    SOURCE_VOLUME_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_PATH_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    source_volume: str
    container_path: str
    read_only: bool
    def __init__(self, source_volume: _Optional[str] = ..., container_path: _Optional[str] = ..., read_only: _Optional[bool] = ...) -> None: ...

class VolumeFrom(_message.Message):
    __slots__ = ("source_container", "read_only")
    SOURCE_CONTAINER_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    source_container: str
    read_only: bool
    def __init__(self, source_container: _Optional[str] = ..., read_only: _Optional[bool] = ...) -> None: ...

class LogConfig(_message.Message):
    __slots__ = ("driver", "options")
    class OptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DRIVER_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    driver: str
    options: _containers.ScalarMap[str, str]
    def __init__(self, driver: _Optional[str] = ..., options: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Credentials(_message.Message):
    __slots__ = ("id", "role_arn", "access_key_id", "secret_access_key", "session_token", "expiration")
    ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_ARN_FIELD_NUMBER: _ClassVar[int]
    ACCESS_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SECRET_ACCESS_KEY_FIELD_NUMBER: _ClassVar[int]
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRATION_FIELD_NUMBER: _ClassVar[int]
    id: str
    role_arn: str
    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: float
    def __init__(self, id: _Optional[str] = ..., role_arn: _Optional[str] = ..., access_key_id: _Optional[str] = ..., secret_access_key: _Optional[str] = ..., session_token: _Optional[str] = ..., expiration: _Optional[float] = ...) -> None: ...

class KeyValue(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class PortMapping(_message.Message):
    __slots__ = ("container_port", "host_port", "protocol")
    CONTAINER_PORT_FIELD_NUMBER: _ClassVar[int]
    HOST_PORT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    container_port: int
    host_port: int
    protocol: str
    def __init__(self, container_port: _Optional[int] = ..., host_port: _Optional[int] = ..., protocol: _Optional[str] = ...) -> None: ...

class HealthCheck(_message.Message):
    __slots__ = ("command", "interval_s", "timeout_s", "retries", "start_period_s")
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    START_PERIOD_S_FIELD_NUMBER: _ClassVar[int]
    command: _containers.RepeatedScalarFieldContainer[str]
    interval_s: int
    timeout_s: int
    retries: int
    start_period_s: int
    def __init__(self, command: _Optional[_Iterable[str]] = ..., interval_s: _Optional[int] = ..., timeout_s: _Optional[int] = ..., retries: _Optional[int] = ..., start_period_s: _Optional[int] = ...) -> None: ...

class ContainerSpec(_message.Message):
    __slots__ = ("name", "image", "command", "entry_point", "environment", "port_mappings", "memory_mib", "memory_reservation_mib", "cpu", "essential", "linux", "ulimits", "security", "dns", "depends_on", "start_timeout_s", "restart_policy", "interactive", "pseudo_terminal", "gpus", "gpu_ids", "stop_timeout_s", "docker_labels", "health_check", "working_directory", "user", "links", "hostname", "secrets", "registry_auth", "mounts", "volumes_from", "log_config")
    class DockerLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class SecretsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ENTRY_POINT_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    PORT_MAPPINGS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MIB_FIELD_NUMBER: _ClassVar[int]
    MEMORY_RESERVATION_MIB_FIELD_NUMBER: _ClassVar[int]
    CPU_FIELD_NUMBER: _ClassVar[int]
    ESSENTIAL_FIELD_NUMBER: _ClassVar[int]
    LINUX_FIELD_NUMBER: _ClassVar[int]
    ULIMITS_FIELD_NUMBER: _ClassVar[int]
    SECURITY_FIELD_NUMBER: _ClassVar[int]
    DNS_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    START_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    RESTART_POLICY_FIELD_NUMBER: _ClassVar[int]
    INTERACTIVE_FIELD_NUMBER: _ClassVar[int]
    PSEUDO_TERMINAL_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    GPU_IDS_FIELD_NUMBER: _ClassVar[int]
    STOP_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    DOCKER_LABELS_FIELD_NUMBER: _ClassVar[int]
    HEALTH_CHECK_FIELD_NUMBER: _ClassVar[int]
    WORKING_DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_AUTH_FIELD_NUMBER: _ClassVar[int]
    MOUNTS_FIELD_NUMBER: _ClassVar[int]
    VOLUMES_FROM_FIELD_NUMBER: _ClassVar[int]
    LOG_CONFIG_FIELD_NUMBER: _ClassVar[int]
    name: str
    image: str
    command: _containers.RepeatedScalarFieldContainer[str]
    entry_point: _containers.RepeatedScalarFieldContainer[str]
    environment: _containers.RepeatedCompositeFieldContainer[KeyValue]
    port_mappings: _containers.RepeatedCompositeFieldContainer[PortMapping]
    memory_mib: int
    memory_reservation_mib: int
    cpu: int
    essential: bool
    linux: LinuxParams
    ulimits: _containers.RepeatedCompositeFieldContainer[Ulimit]
    security: Security
    dns: Dns
    depends_on: _containers.RepeatedCompositeFieldContainer[Dependency]
    start_timeout_s: int
    restart_policy: RestartPolicy
    interactive: bool
    pseudo_terminal: bool
    gpus: int
    gpu_ids: _containers.RepeatedScalarFieldContainer[str]
    stop_timeout_s: int
    docker_labels: _containers.ScalarMap[str, str]
    health_check: HealthCheck
    working_directory: str
    user: str
    links: _containers.RepeatedScalarFieldContainer[str]
    hostname: str
    secrets: _containers.ScalarMap[str, str]
    registry_auth: RegistryAuth
    mounts: _containers.RepeatedCompositeFieldContainer[Mount]
    volumes_from: _containers.RepeatedCompositeFieldContainer[VolumeFrom]
    log_config: LogConfig
    def __init__(self, name: _Optional[str] = ..., image: _Optional[str] = ..., command: _Optional[_Iterable[str]] = ..., entry_point: _Optional[_Iterable[str]] = ..., environment: _Optional[_Iterable[_Union[KeyValue, _Mapping]]] = ..., port_mappings: _Optional[_Iterable[_Union[PortMapping, _Mapping]]] = ..., memory_mib: _Optional[int] = ..., memory_reservation_mib: _Optional[int] = ..., cpu: _Optional[int] = ..., essential: _Optional[bool] = ..., linux: _Optional[_Union[LinuxParams, _Mapping]] = ..., ulimits: _Optional[_Iterable[_Union[Ulimit, _Mapping]]] = ..., security: _Optional[_Union[Security, _Mapping]] = ..., dns: _Optional[_Union[Dns, _Mapping]] = ..., depends_on: _Optional[_Iterable[_Union[Dependency, _Mapping]]] = ..., start_timeout_s: _Optional[int] = ..., restart_policy: _Optional[_Union[RestartPolicy, _Mapping]] = ..., interactive: _Optional[bool] = ..., pseudo_terminal: _Optional[bool] = ..., gpus: _Optional[int] = ..., gpu_ids: _Optional[_Iterable[str]] = ..., stop_timeout_s: _Optional[int] = ..., docker_labels: _Optional[_Mapping[str, str]] = ..., health_check: _Optional[_Union[HealthCheck, _Mapping]] = ..., working_directory: _Optional[str] = ..., user: _Optional[str] = ..., links: _Optional[_Iterable[str]] = ..., hostname: _Optional[str] = ..., secrets: _Optional[_Mapping[str, str]] = ..., registry_auth: _Optional[_Union[RegistryAuth, _Mapping]] = ..., mounts: _Optional[_Iterable[_Union[Mount, _Mapping]]] = ..., volumes_from: _Optional[_Iterable[_Union[VolumeFrom, _Mapping]]] = ..., log_config: _Optional[_Union[LogConfig, _Mapping]] = ...) -> None: ...

class RegistryAuth(_message.Message):
    __slots__ = ("username", "password", "server")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    SERVER_FIELD_NUMBER: _ClassVar[int]
    username: str
    password: str
    server: str
    def __init__(self, username: _Optional[str] = ..., password: _Optional[str] = ..., server: _Optional[str] = ...) -> None: ...

class LogRequest(_message.Message):
    __slots__ = ("request_id", "task_arn", "container", "follow", "tail")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ARN_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    TAIL_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    task_arn: str
    container: str
    follow: bool
    tail: int
    def __init__(self, request_id: _Optional[int] = ..., task_arn: _Optional[str] = ..., container: _Optional[str] = ..., follow: _Optional[bool] = ..., tail: _Optional[int] = ...) -> None: ...

class LogCancel(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    def __init__(self, request_id: _Optional[int] = ...) -> None: ...

class LinuxParams(_message.Message):
    __slots__ = ("cap_add", "cap_drop", "devices", "init", "shared_memory_mib", "tmpfs", "max_swap_mib", "swappiness")
    CAP_ADD_FIELD_NUMBER: _ClassVar[int]
    CAP_DROP_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    INIT_FIELD_NUMBER: _ClassVar[int]
    SHARED_MEMORY_MIB_FIELD_NUMBER: _ClassVar[int]
    TMPFS_FIELD_NUMBER: _ClassVar[int]
    MAX_SWAP_MIB_FIELD_NUMBER: _ClassVar[int]
    SWAPPINESS_FIELD_NUMBER: _ClassVar[int]
    cap_add: _containers.RepeatedScalarFieldContainer[str]
    cap_drop: _containers.RepeatedScalarFieldContainer[str]
    devices: _containers.RepeatedCompositeFieldContainer[Device]
    init: bool
    shared_memory_mib: int
    tmpfs: _containers.RepeatedCompositeFieldContainer[Tmpfs]
    max_swap_mib: int
    swappiness: int
    def __init__(self, cap_add: _Optional[_Iterable[str]] = ..., cap_drop: _Optional[_Iterable[str]] = ..., devices: _Optional[_Iterable[_Union[Device, _Mapping]]] = ..., init: _Optional[bool] = ..., shared_memory_mib: _Optional[int] = ..., tmpfs: _Optional[_Iterable[_Union[Tmpfs, _Mapping]]] = ..., max_swap_mib: _Optional[int] = ..., swappiness: _Optional[int] = ...) -> None: ...

class Device(_message.Message):
    __slots__ = ("host_path", "container_path", "permissions")
    HOST_PATH_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_PATH_FIELD_NUMBER: _ClassVar[int]
    PERMISSIONS_FIELD_NUMBER: _ClassVar[int]
    host_path: str
    container_path: str
    permissions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, host_path: _Optional[str] = ..., container_path: _Optional[str] = ..., permissions: _Optional[_Iterable[str]] = ...) -> None: ...

class Tmpfs(_message.Message):
    __slots__ = ("container_path", "size_mib", "mount_options")
    CONTAINER_PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_MIB_FIELD_NUMBER: _ClassVar[int]
    MOUNT_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    container_path: str
    size_mib: int
    mount_options: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, container_path: _Optional[str] = ..., size_mib: _Optional[int] = ..., mount_options: _Optional[_Iterable[str]] = ...) -> None: ...

class Ulimit(_message.Message):
    __slots__ = ("name", "soft", "hard")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SOFT_FIELD_NUMBER: _ClassVar[int]
    HARD_FIELD_NUMBER: _ClassVar[int]
    name: str
    soft: int
    hard: int
    def __init__(self, name: _Optional[str] = ..., soft: _Optional[int] = ..., hard: _Optional[int] = ...) -> None: ...

class Security(_message.Message):
    __slots__ = ("privileged", "readonly_root_filesystem", "security_options", "sysctls")
    class SysctlsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PRIVILEGED_FIELD_NUMBER: _ClassVar[int]
    READONLY_ROOT_FILESYSTEM_FIELD_NUMBER: _ClassVar[int]
    SECURITY_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    SYSCTLS_FIELD_NUMBER: _ClassVar[int]
    privileged: bool
    readonly_root_filesystem: bool
    security_options: _containers.RepeatedScalarFieldContainer[str]
    sysctls: _containers.ScalarMap[str, str]
    def __init__(self, privileged: _Optional[bool] = ..., readonly_root_filesystem: _Optional[bool] = ..., security_options: _Optional[_Iterable[str]] = ..., sysctls: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Dns(_message.Message):
    __slots__ = ("servers", "search_domains", "extra_hosts", "disable_networking")
    SERVERS_FIELD_NUMBER: _ClassVar[int]
    SEARCH_DOMAINS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_HOSTS_FIELD_NUMBER: _ClassVar[int]
    DISABLE_NETWORKING_FIELD_NUMBER: _ClassVar[int]
    servers: _containers.RepeatedScalarFieldContainer[str]
    search_domains: _containers.RepeatedScalarFieldContainer[str]
    extra_hosts: _containers.RepeatedScalarFieldContainer[str]
    disable_networking: bool
    def __init__(self, servers: _Optional[_Iterable[str]] = ..., search_domains: _Optional[_Iterable[str]] = ..., extra_hosts: _Optional[_Iterable[str]] = ..., disable_networking: _Optional[bool] = ...) -> None: ...

class Dependency(_message.Message):
    __slots__ = ("container", "condition")
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    container: str
    condition: str
    def __init__(self, container: _Optional[str] = ..., condition: _Optional[str] = ...) -> None: ...

class RestartPolicy(_message.Message):
    __slots__ = ("enabled", "ignored_exit_codes", "attempt_period_s")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    IGNORED_EXIT_CODES_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_PERIOD_S_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    ignored_exit_codes: _containers.RepeatedScalarFieldContainer[int]
    attempt_period_s: int
    def __init__(self, enabled: _Optional[bool] = ..., ignored_exit_codes: _Optional[_Iterable[int]] = ..., attempt_period_s: _Optional[int] = ...) -> None: ...

class ExecStart(_message.Message):
    __slots__ = ("session_id", "task_arn", "container", "command", "stdin", "tty", "rows", "cols")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ARN_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    TTY_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLS_FIELD_NUMBER: _ClassVar[int]
    session_id: int
    task_arn: str
    container: str
    command: _containers.RepeatedScalarFieldContainer[str]
    stdin: bool
    tty: bool
    rows: int
    cols: int
    def __init__(self, session_id: _Optional[int] = ..., task_arn: _Optional[str] = ..., container: _Optional[str] = ..., command: _Optional[_Iterable[str]] = ..., stdin: _Optional[bool] = ..., tty: _Optional[bool] = ..., rows: _Optional[int] = ..., cols: _Optional[int] = ...) -> None: ...

class ExecInput(_message.Message):
    __slots__ = ("session_id", "data", "stdin_eof", "rows", "cols", "signal", "cancel", "ack_bytes")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    STDIN_EOF_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLS_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    ACK_BYTES_FIELD_NUMBER: _ClassVar[int]
    session_id: int
    data: bytes
    stdin_eof: bool
    rows: int
    cols: int
    signal: str
    cancel: bool
    ack_bytes: int
    def __init__(self, session_id: _Optional[int] = ..., data: _Optional[bytes] = ..., stdin_eof: _Optional[bool] = ..., rows: _Optional[int] = ..., cols: _Optional[int] = ..., signal: _Optional[str] = ..., cancel: _Optional[bool] = ..., ack_bytes: _Optional[int] = ...) -> None: ...

class ExecOutput(_message.Message):
    __slots__ = ("session_id", "started", "stream", "data", "exited", "exit_code", "error")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    EXITED_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    session_id: int
    started: bool
    stream: int
    data: bytes
    exited: bool
    exit_code: int
    error: str
    def __init__(self, session_id: _Optional[int] = ..., started: _Optional[bool] = ..., stream: _Optional[int] = ..., data: _Optional[bytes] = ..., exited: _Optional[bool] = ..., exit_code: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class DnsSnapshot(_message.Message):
    __slots__ = ("version", "zones", "records")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ZONES_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    version: int
    zones: _containers.RepeatedScalarFieldContainer[str]
    records: _containers.RepeatedCompositeFieldContainer[DnsRecordSet]
    def __init__(self, version: _Optional[int] = ..., zones: _Optional[_Iterable[str]] = ..., records: _Optional[_Iterable[_Union[DnsRecordSet, _Mapping]]] = ...) -> None: ...

class DnsRecordSet(_message.Message):
    __slots__ = ("name", "ttl", "a", "srv", "targets")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    A_FIELD_NUMBER: _ClassVar[int]
    SRV_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    name: str
    ttl: int
    a: bool
    srv: bool
    targets: _containers.RepeatedCompositeFieldContainer[DnsTarget]
    def __init__(self, name: _Optional[str] = ..., ttl: _Optional[int] = ..., a: _Optional[bool] = ..., srv: _Optional[bool] = ..., targets: _Optional[_Iterable[_Union[DnsTarget, _Mapping]]] = ...) -> None: ...

class DnsTarget(_message.Message):
    __slots__ = ("ipv4", "port", "instance_id")
    IPV4_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    ipv4: str
    port: int
    instance_id: str
    def __init__(self, ipv4: _Optional[str] = ..., port: _Optional[int] = ..., instance_id: _Optional[str] = ...) -> None: ...

class TaskProtectionRequest(_message.Message):
    __slots__ = ("request_id", "task_arn", "update", "protection_enabled", "expires_in_minutes")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ARN_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    PROTECTION_ENABLED_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_MINUTES_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    task_arn: str
    update: bool
    protection_enabled: bool
    expires_in_minutes: int
    def __init__(self, request_id: _Optional[int] = ..., task_arn: _Optional[str] = ..., update: _Optional[bool] = ..., protection_enabled: _Optional[bool] = ..., expires_in_minutes: _Optional[int] = ...) -> None: ...

class TaskProtectionReply(_message.Message):
    __slots__ = ("request_id", "task_arn", "protection_enabled", "expiration_date", "error_code", "error_message")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ARN_FIELD_NUMBER: _ClassVar[int]
    PROTECTION_ENABLED_FIELD_NUMBER: _ClassVar[int]
    EXPIRATION_DATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    task_arn: str
    protection_enabled: bool
    expiration_date: float
    error_code: str
    error_message: str
    def __init__(self, request_id: _Optional[int] = ..., task_arn: _Optional[str] = ..., protection_enabled: _Optional[bool] = ..., expiration_date: _Optional[float] = ..., error_code: _Optional[str] = ..., error_message: _Optional[str] = ...) -> None: ...
