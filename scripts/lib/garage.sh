# shellcheck shell=bash
# A Garage cluster (a distributed S3-compatible store, https://garagehq.deuxfleurs.fr)
# for the scripts and tests that need one (sourced, not run). Garage is AGPL
# and used only as a test server: `cargo install garage --locked` (2.5), or
# scripts/install-test-deps.sh --garage.
#
#   start_garage DIR NODES   starts NODES nodes (1 to 9) on 127.0.0.1 ..
#                            127.0.0.NODES, replication factor NODES (at most
#                            3), db_engine sqlite, everything under DIR; makes
#                            a key and exports AWS_ENDPOINT_URL (node 1),
#                            AWS_REGION and the key as AWS_ACCESS_KEY_ID /
#                            AWS_SECRET_ACCESS_KEY
#   garage_bucket NAME       creates a bucket the key may read and write
#   kill_garage_node N       SIGKILLs node N
#   stop_garage              stops every node (safe when none runs)

garage_pids=()
garage_dir=
garage_port=

garage_cli() {
    garage -c "$garage_dir/node1/garage.toml" "$@"
}

start_garage() {
    garage_dir=$1
    local nodes=$2 rf secret n
    command -v garage >/dev/null || {
        echo "garage is not installed (cargo install garage --locked)" >&2
        return 1
    }
    ((nodes >= 1 && nodes <= 9)) || {
        echo "start_garage: 1 to 9 nodes, not $nodes" >&2
        return 1
    }
    rf=$((nodes < 3 ? nodes : 3))
    secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
    # Two free ports, chosen together (the next port up may be taken).
    local ports rpc_port
    ports=$(python3 -c 'import socket
a, b = socket.socket(), socket.socket()
a.bind(("127.0.0.1", 0)); b.bind(("127.0.0.1", 0))
print(a.getsockname()[1], b.getsockname()[1])')
    read -r garage_port rpc_port <<<"$ports"
    mkdir -p "$garage_dir"
    garage_pids=()
    for n in $(seq "$nodes"); do
        local d=$garage_dir/node$n
        mkdir -p "$d/meta" "$d/data"
        cat >"$d/garage.toml" <<EOF
metadata_dir = "$d/meta"
data_dir = "$d/data"
db_engine = "sqlite"
replication_factor = $rf
rpc_bind_addr = "127.0.0.$n:$rpc_port"
rpc_public_addr = "127.0.0.$n:$rpc_port"
rpc_secret = "$secret"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.$n:$garage_port"
root_domain = ".s3.garage.localhost"
EOF
        RUST_LOG=warn garage -c "$d/garage.toml" server >"$d/log" 2>&1 &
        garage_pids+=($!)
    done
    # Every node answers its RPC port: then connect them and lay them out.
    local ids=() id up
    for n in $(seq "$nodes"); do
        up=0
        for _ in $(seq 300); do
            id=$(garage -c "$garage_dir/node$n/garage.toml" node id -q 2>/dev/null) && {
                up=1
                break
            }
            sleep 0.1
        done
        ((up)) || {
            echo "garage node $n did not start (log: $garage_dir/node$n/log)" >&2
            return 1
        }
        ids+=("$id")
    done
    for id in "${ids[@]:1}"; do
        garage_cli node connect "$id" >/dev/null || return 1
    done
    for id in "${ids[@]}"; do
        garage_cli layout assign -z dc1 -c 1G "${id%%@*}" >/dev/null || return 1
    done
    garage_cli layout apply --version 1 >/dev/null || return 1
    local key
    key=$(garage_cli key create vault-test) || return 1
    export AWS_ACCESS_KEY_ID
    AWS_ACCESS_KEY_ID=$(awk '/Key ID:/ {print $3}' <<<"$key")
    export AWS_SECRET_ACCESS_KEY
    AWS_SECRET_ACCESS_KEY=$(awk '/Secret key:/ {print $3}' <<<"$key")
    [[ -n $AWS_ACCESS_KEY_ID && -n $AWS_SECRET_ACCESS_KEY ]] || {
        echo "could not read the key garage made: $key" >&2
        return 1
    }
    export AWS_ENDPOINT_URL=http://127.0.0.1:$garage_port AWS_REGION=garage
    unset AWS_PROFILE
}

garage_bucket() {
    garage_cli bucket create "$1" >/dev/null &&
        garage_cli bucket allow --read --write --owner "$1" --key vault-test >/dev/null
}

kill_garage_node() {
    local pid=${garage_pids[$(($1 - 1))]}
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    garage_pids[$(($1 - 1))]=
}

stop_garage() {
    local pid
    for pid in "${garage_pids[@]}"; do
        [[ -n $pid ]] || continue
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    garage_pids=()
}
