#!/usr/bin/env bash
# Install what Dockyard and its tests need from Debian (Docker engine, registry, busybox for
# the sample images, iproute2/iptables/nsenter for the lab; htpasswd, openssl and pgrep,
# which tests call; etcd and etcdctl for the controllers' high-availability store; chromium
# and chromium-driver for the web console's browser tests) and
# start dockerd when none is running. Every external command the tests run must be in this
# list: CI machines start from nothing.
# Idempotent; needs root (or sudo).
set -euo pipefail
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
need=()
for pair in dockerd:docker.io docker:docker.io docker-registry:docker-registry busybox:busybox-static \
            ip:iproute2 iptables:iptables nsenter:util-linux htpasswd:apache2-utils \
            openssl:openssl pgrep:procps etcd:etcd-server etcdctl:etcd-client \
            chromium:chromium chromedriver:chromium-driver; do
  cmd=${pair%%:*}; pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || [ -x "/bin/$cmd" ] || need+=("$pkg")
done
[ -x /bin/busybox ] || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
# The controller gives tasks with hostPort 0 ports from 49153-65535 (ECS's dynamic range); the
# kernel's own ephemeral ports (32768-60999) overlap it, so an outgoing connection or a port-0
# listener could hold the port a task is given ("address already in use"). End the kernel's
# range below it (the agent warns on hosts where they overlap). Not a reservation of the
# range: the kernel would then give port-0 binds that land in it the range's first free port,
# over and over.
read -r lo hi < /proc/sys/net/ipv4/ip_local_port_range
if [ "$hi" -ge 49153 ]; then
  $SUDO sysctl -qw "net.ipv4.ip_local_port_range=$lo 49152"
fi
if ! docker info >/dev/null 2>&1; then
  echo "starting dockerd"
  mkdir -p /var/log
  # its own session, holding no descriptor of ours: a dockerd started under `flock` must
  # not hold the lock (or a pipe of a CI runner) for as long as it runs
  # shellcheck disable=SC2016
  $SUDO bash -c 'for fd in /proc/$$/fd/*; do fd=${fd##*/}; [ "$fd" -gt 2 ] && eval "exec $fd>&-"; done
    setsid nohup dockerd </dev/null >/var/log/dockerd.log 2>&1 &'
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start: see /var/log/dockerd.log" >&2; exit 1; }
fi
