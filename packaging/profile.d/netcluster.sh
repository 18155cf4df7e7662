# Installed by the netcluster Debian package as /etc/profile.d/netcluster.sh:
# the packaged daemon keeps its channel sockets in /run/netcluster (the
# systemd unit's RuntimeDirectory), so login shells' clients (ncclient, the
# Rust, Node.js and Python libraries) look there too, unless told otherwise.
if [ -z "${NETCLUSTER_SOCKET_DIR:-}" ]; then
  NETCLUSTER_SOCKET_DIR=/run/netcluster
  export NETCLUSTER_SOCKET_DIR
fi
