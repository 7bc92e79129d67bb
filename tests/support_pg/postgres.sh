#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests: private data folder, loopback only, a free port.
#
#   postgres.sh start DIR   prints the server's URL (no password in it) on stdout
#   postgres.sh stop DIR
#
# With STITCH_BRIDGE_TEST_PG_PASSWORD set, TCP connections need that password (scram-sha-256);
# otherwise they are trusted. TLS is on (plain TCP is still accepted), with a CA and a server
# certificate for 127.0.0.1/localhost made now with `openssl`: DIR/tls/ca.crt is the CA to trust,
# DIR/tls/other-ca.crt one that did not sign it. STITCH_BRIDGE_TEST_PG_SSL=off starts it without
# TLS. PostgreSQL refuses to run as root, so as root the server runs as
# the `postgres` user (created by Debian's package) and DIR is handed to it.
set -euo pipefail
cmd=${1:?start|stop}
dir=${2:?data folder}

bin=""
if command -v initdb >/dev/null 2>&1; then
  bin=$(dirname "$(command -v initdb)")
else
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$d/initdb" ] && { bin=$d; break; }
  done
fi
[ -n "$bin" ] || { echo "initdb not found (install PostgreSQL)" >&2; exit 3; }

as_owner=()
if [ "$(id -u)" = 0 ]; then
  as_owner=(runuser -u postgres --)
fi

if [ "$cmd" = stop ]; then
  [ -f "$dir/data/postmaster.pid" ] && "${as_owner[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  exit 0
fi

mkdir -p "$dir"
[ "$(id -u)" = 0 ] && chown postgres "$dir"
auth=(--auth=trust)
if [ -n "${STITCH_BRIDGE_TEST_PG_PASSWORD:-}" ]; then
  printf '%s\n' "$STITCH_BRIDGE_TEST_PG_PASSWORD" >"$dir/pw"
  [ "$(id -u)" = 0 ] && chown postgres "$dir/pw"
  chmod 600 "$dir/pw"
  auth=(--auth-local=trust --auth-host=scram-sha-256 --pwfile="$dir/pw")
fi
"${as_owner[@]}" "$bin/initdb" -D "$dir/data" -U sb -E UTF8 --no-sync "${auth[@]}" >"$dir/initdb.log" 2>&1 \
  || { cat "$dir/initdb.log" >&2; exit 1; }
rm -f "$dir/pw"

ssl_opts=""
if [ "${STITCH_BRIDGE_TEST_PG_SSL:-on}" != off ]; then
  command -v openssl >/dev/null || { echo "openssl not found (install openssl)" >&2; exit 3; }
  tls="$dir/tls"
  mkdir -p "$tls"
  {
    for ca in ca other-ca; do
      openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=stitch-bridge test $ca" \
        -keyout "$tls/$ca.key" -out "$tls/$ca.crt"
    done
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$tls/server.key" -out "$tls/server.csr"
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' >"$tls/server.ext"
    openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" -CAcreateserial -days 2 \
      -extfile "$tls/server.ext" -out "$tls/server.crt"
  } >"$dir/openssl.log" 2>&1 || { cat "$dir/openssl.log" >&2; exit 1; }
  chmod 600 "$tls"/*.key
  chmod 644 "$tls"/*.crt
  [ "$(id -u)" = 0 ] && chown -R postgres "$tls"
  ssl_opts="-c ssl=on -c ssl_cert_file=$tls/server.crt -c ssl_key_file=$tls/server.key"
fi

for _ in 1 2 3 4 5; do
  port=$((20000 + RANDOM % 40000))
  # Something already answers there: try another port.
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue
  if "${as_owner[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 start \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off $ssl_opts" \
      >/dev/null 2>&1; then
    echo "postgres://sb@127.0.0.1:$port/postgres"
    exit 0
  fi
done
cat "$dir/server.log" >&2
exit 1
