#!/usr/bin/env bash
# Client TLS on the RESP port with the clients people use: redis-cli --tls
# and redis-py ssl=True, against a three-node cluster serving TLS on
# --tls-port with --tls-auth-clients yes (the default), then one node
# restarted with `no` and `optional`.
#
#   scripts/resp-tls-check.sh target/release/synod [EXTRA SERVER ARGS...]
#
# Needs openssl (certificates), redis-cli 6+ built with TLS and
# `pip install redis`. Exit status 0 when every check holds.
set -euo pipefail
exe=$1
shift
extra=("$@")
tmp=$(mktemp -d /tmp/resp-tls-check.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
cd "$tmp"

# A CA, a server certificate for 127.0.0.1/localhost, a client certificate.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=synod-test-ca \
  -keyout ca.key -out ca.crt 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
  -extfile server.ext -out server.crt 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=client -keyout client.key -out client.csr 2>/dev/null
printf 'extendedKeyUsage=clientAuth\n' >client.ext
openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
  -extfile client.ext -out client.crt 2>/dev/null

base=$((30000 + $$ % 20000))
peers="1=127.0.0.1:$((base + 101)),2=127.0.0.1:$((base + 102)),3=127.0.0.1:$((base + 103))"
start() { # id, auth-clients[, plain port]
  "$exe" server --id "$1" --peers "$peers" --resp "127.0.0.1:${3:-$((base + $1))}" \
    --tls-port "$((base + 10 + $1))" --tls-cert-file server.crt --tls-key-file server.key \
    --tls-ca-cert-file ca.crt --tls-auth-clients "$2" --data-dir "n$1" --init --insecure-peer-links "${extra[@]}" \
    >>"n$1.log" 2>&1 &
  pids[$1]=$!
}
for id in 1 2 3; do start "$id" yes; done
for _ in $(seq 100); do
  [ "$(redis-cli -p $((base + 1)) SET ready 1 2>/dev/null)" = OK ] && break
  sleep 0.2
done

fail=0
check() { # description, expected, actual
  if [ "$2" = "$3" ]; then echo "ok    $1: $3"; else echo "FAIL  $1: expected '$2', got '$3'"; fail=1; fi
}
tls() { redis-cli --tls --cacert ca.crt --cert client.crt --key client.key "$@" 2>&1; }

check "redis-cli --tls SET on node 1" OK "$(tls -p $((base + 11)) SET greeting 'hello over tls')"
check "redis-cli --tls GET on node 2" "hello over tls" "$(tls -p $((base + 12)) GET greeting)"
check "redis-cli --tls without a client certificate (yes)" refused \
  "$(redis-cli --tls --cacert ca.crt -p $((base + 13)) PING 2>&1 | grep -q PONG && echo served || echo refused)"
check "redis-py ssl=True with a client certificate" "b'hello over tls'" "$(python3 - "$base" <<'EOF'
import sys, redis
base = int(sys.argv[1])
r = redis.Redis(host="127.0.0.1", port=base + 13, ssl=True, ssl_ca_certs="ca.crt",
                ssl_certfile="client.crt", ssl_keyfile="client.key")
r.set("py", "set by redis-py")
print(r.get("greeting"))
EOF
)"
check "redis-py ssl=True without a client certificate (yes)" refused "$(python3 - "$base" <<'EOF'
import sys, redis
base = int(sys.argv[1])
r = redis.Redis(host="127.0.0.1", port=base + 13, ssl=True, ssl_ca_certs="ca.crt")
try:
    r.ping()
    print("served")
except redis.exceptions.ConnectionError:
    print("refused")
EOF
)"

echo "node 3 counted the refused clients: $(redis-cli -p $((base + 3)) INFO stats | grep tls_handshake_failures | tr -d '\r')"

# Node 3 again with --tls-auth-clients no, then optional.
for mode in no optional; do
  kill "${pids[3]}"
  wait "${pids[3]}" 2>/dev/null || true
  start 3 "$mode"
  for _ in $(seq 100); do
    redis-cli -p $((base + 3)) PING >/dev/null 2>&1 && break
    sleep 0.2
  done
  check "redis-cli --tls without a client certificate ($mode)" "set by redis-py" \
    "$(redis-cli --tls --cacert ca.crt -p $((base + 13)) GET py 2>&1)"
  check "redis-cli --tls with a client certificate ($mode)" PONG "$(tls -p $((base + 13)) PING)"
done

# Node 3 with --resp 127.0.0.1:0: TLS only, as Redis' `port 0`.
kill "${pids[3]}"
wait "${pids[3]}" 2>/dev/null || true
start 3 yes 0
for _ in $(seq 100); do
  tls -p $((base + 13)) PING 2>/dev/null | grep -q PONG && break
  sleep 0.2
done
check "TLS only (--resp HOST:0): TLS serves" "set by redis-py" "$(tls -p $((base + 13)) GET py)"
check "TLS only (--resp HOST:0): the plain port is closed" refused \
  "$(redis-cli -p $((base + 3)) PING 2>&1 | grep -q PONG && echo served || echo refused)"
exit $fail
