# shellcheck shell=bash
# A moto S3 server for the scripts that need one (sourced, not run):
#   start_moto [LOG]   starts it on a free port, waits until it answers and
#                      exports AWS_ENDPOINT_URL, AWS_REGION and test
#                      credentials; sets moto_pid and moto_port
#   make_bucket NAME   creates a bucket
#   stop_moto          stops it (safe to call when it is not running)

moto_pid=
moto_port=

start_moto() {
    local log=${1:-/dev/null}
    moto_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    python3 -m moto.server -H 127.0.0.1 -p "$moto_port" >"$log" 2>&1 &
    moto_pid=$!
    local up=0
    for _ in $(seq 300); do
        if python3 -c "import socket; socket.create_connection(('127.0.0.1',$moto_port),1)" 2>/dev/null; then
            up=1
            break
        fi
        sleep 0.1
    done
    if ((!up)); then
        echo "moto did not start (python3 -m moto.server; log: $log)" >&2
        return 1
    fi
    export AWS_ENDPOINT_URL=http://127.0.0.1:$moto_port AWS_REGION=us-east-1
    export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=testsecret
    unset AWS_PROFILE
}

make_bucket() {
    python3 - "$moto_port" "$1" <<'PY'
import sys, urllib.request
req = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/{sys.argv[2]}", method="PUT")
urllib.request.urlopen(req).read()
PY
}

stop_moto() {
    if [[ -n $moto_pid ]]; then
        kill "$moto_pid" 2>/dev/null
        wait "$moto_pid" 2>/dev/null
        moto_pid=
    fi
}
