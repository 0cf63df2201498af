#!/usr/bin/env bash
# peers.sh start|stop DIR : the real servers the integration tests talk to, on loopback or on
# private unix sockets only. `start` prints `export` lines for the test run to eval.
#   docker engine: private data/exec roots and socket, no iptables, no bridge (TESTING.md)
#   s3s-fs on 127.0.0.1:9000 (checks SigV4), moto on 127.0.0.1:9001 with IAM authentication on;
#   each gets a bucket "lifeboat-test" and a credentials file DIR/<server>.credentials
#   docker-registry (distribution 2.8) on 127.0.0.1:5000, and on :5001 with basic auth (user
#   lifeboat, password in DIR/registry.password)
set -euo pipefail
cmd=${1:?usage: peers.sh start|stop DIR}
dir=${2:?usage: peers.sh start|stop DIR}
mkdir -p "$dir"

start_docker() {
  local d="$dir/docker"
  mkdir -p "$d"
  if [[ -S "$d/docker.sock" ]] && DOCKER_HOST="unix://$d/docker.sock" DOCKER_API_VERSION=1.41 docker version >/dev/null 2>&1; then
    return
  fi
  dockerd --data-root "$d/data" --exec-root "$d/exec" --pidfile "$d/pid" -H "unix://$d/docker.sock" \
    --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false --bridge=none \
    --storage-driver overlay2 >"$d/log" 2>&1 &
  for _ in $(seq 1 60); do
    DOCKER_HOST="unix://$d/docker.sock" DOCKER_API_VERSION=1.41 docker version >/dev/null 2>&1 && return
    sleep 0.5
  done
  echo "dockerd did not start; its log:" >&2
  tail -20 "$d/log" >&2
  exit 1
}

wait_port() {
  for _ in $(seq 1 100); do
    (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return
    sleep 0.2
  done
  echo "nothing listens on 127.0.0.1:$1; see $2" >&2
  tail -20 "$2" >&2
  exit 1
}

start_s3s() {
  local d="$dir/s3s"
  mkdir -p "$d/data"
  if ! command -v s3s-fs >/dev/null; then
    cargo install s3s-fs@0.14.1 --features binary --locked --quiet >&2
  fi
  [[ -f "$d/pid" ]] && kill "$(cat "$d/pid")" 2>/dev/null || true
  s3s-fs --host 127.0.0.1 --port 9000 --access-key lifeboat-ak --secret-key lifeboat-sk "$d/data" >"$d/log" 2>&1 &
  echo $! >"$d/pid"
  wait_port 9000 "$d/log"
  printf '[default]\naws_access_key_id = lifeboat-ak\naws_secret_access_key = lifeboat-sk\n' >"$dir/s3s.credentials"
  chmod 600 "$dir/s3s.credentials"
  AWS_SHARED_CREDENTIALS_FILE="$dir/s3s.credentials" "$dir/moto-venv/bin/python" - <<'PY' >&2
import boto3
s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:9000", region_name="us-east-1")
if "lifeboat-test" not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
    s3.create_bucket(Bucket="lifeboat-test")
PY
}

start_moto() {
  local d="$dir/moto"
  mkdir -p "$d"
  if [[ ! -x "$dir/moto-venv/bin/moto_server" ]]; then
    python3 -m venv "$dir/moto-venv" >&2
    "$dir/moto-venv/bin/pip" install -q 'moto[server]' boto3 >&2
  fi
  [[ -f "$d/pid" ]] && kill "$(cat "$d/pid")" 2>/dev/null || true
  # Four unauthenticated calls create an IAM user, its key and an allow-all policy; after
  # them every request's signature is checked.
  INITIAL_NO_AUTH_ACTION_COUNT=4 "$dir/moto-venv/bin/moto_server" -H 127.0.0.1 -p 9001 >"$d/log" 2>&1 &
  echo $! >"$d/pid"
  wait_port 9001 "$d/log"
  "$dir/moto-venv/bin/python" - "$dir/moto.credentials" <<'PY' >&2
import json, sys, boto3
iam = boto3.client("iam", endpoint_url="http://127.0.0.1:9001", region_name="us-east-1",
                   aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
iam.create_user(UserName="lifeboat")
key = iam.create_access_key(UserName="lifeboat")["AccessKey"]
doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
arn = iam.create_policy(PolicyName="all", PolicyDocument=json.dumps(doc))["Policy"]["Arn"]
iam.attach_user_policy(UserName="lifeboat", PolicyArn=arn)
with open(sys.argv[1], "w") as f:
    f.write("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n" % (key["AccessKeyId"], key["SecretAccessKey"]))
s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:9001", region_name="us-east-1",
                  aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
s3.create_bucket(Bucket="lifeboat-test")
PY
  chmod 600 "$dir/moto.credentials"
}

# The OCI distribution reference registry: open on :5000, with basic auth (htpasswd) on :5001.
start_registry() {  # NAME PORT [htpasswd]
  local d="$dir/$1"
  mkdir -p "$d/data"
  [[ -f "$d/pid" ]] && kill "$(cat "$d/pid")" 2>/dev/null || true
  local auth=""
  if [[ -n ${3:-} ]]; then
    [[ -f "$dir/registry.password" ]] || head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$dir/registry.password"
    chmod 600 "$dir/registry.password"
    htpasswd -Bbn lifeboat "$(cat "$dir/registry.password")" >"$d/htpasswd"
    auth="auth: {htpasswd: {realm: lifeboat-test, path: $d/htpasswd}}"
  fi
  cat >"$d/config.yml" <<YML
version: 0.1
log: {level: info, accesslog: {disabled: false}}
storage: {cache: {blobdescriptor: inmemory}, filesystem: {rootdirectory: $d/data}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$2}
$auth
YML
  docker-registry serve "$d/config.yml" >"$d/log" 2>&1 &
  echo $! >"$d/pid"
  wait_port "$2" "$d/log"
}

case "$cmd" in
  start)
    start_registry registry 5000
    start_registry registry-auth 5001 htpasswd
    start_docker
    start_moto
    start_s3s
    echo "export DOCKER_HOST=unix://$dir/docker/docker.sock DOCKER_API_VERSION=1.41"
    echo "export LIFEBOAT_TEST_S3S=http://127.0.0.1:9000 LIFEBOAT_TEST_S3S_CREDENTIALS=$dir/s3s.credentials"
    echo "export LIFEBOAT_TEST_MOTO=http://127.0.0.1:9001 LIFEBOAT_TEST_MOTO_CREDENTIALS=$dir/moto.credentials"
    echo "export LIFEBOAT_TEST_REGISTRY=127.0.0.1:5000 LIFEBOAT_TEST_REGISTRY_LOG=$dir/registry/log"
    echo "export LIFEBOAT_TEST_AUTH_REGISTRY=127.0.0.1:5001 LIFEBOAT_TEST_AUTH_REGISTRY_PASSWORD_FILE=$dir/registry.password"
    ;;
  stop)
    for p in docker/pid s3s/pid moto/pid registry/pid registry-auth/pid; do
      if [[ -f "$dir/$p" ]]; then
        kill "$(cat "$dir/$p")" 2>/dev/null || true
        rm -f "$dir/$p"
      fi
    done
    ;;
  *) echo "usage: peers.sh start|stop DIR" >&2; exit 2 ;;
esac
