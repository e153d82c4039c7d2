# Shared by the loopback benchmarks (sourced, after `cd` to the repository's root, with
# NEEDS naming the tools they run): stops when one is missing; defines `free_port` and
# `wait_http URL`; builds the release binary (or takes BIN=) as $bin; $work is a scratch
# directory, removed at exit with every process whose pid is added to `pids`.

for tool in $NEEDS; do
  command -v "$tool" >/dev/null || { echo "needs $tool: apt-get install -y $tool" >&2; exit 1; }
done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 200); do curl -sf "$1" >/dev/null && return 0; sleep 0.05; done; echo "no answer from $1" >&2; exit 1; }

cargo build --release --quiet
bin=${BIN:-${CARGO_TARGET_DIR:-target}/release/downradar}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
