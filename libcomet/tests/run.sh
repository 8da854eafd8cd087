#!/usr/bin/env bash
# The C side of the test suite: builds libcomet with plain cc, installs it into a temporary
# prefix, builds the examples with pkg-config against that install, and runs the C tests and
# the examples under valgrind against a real cometd started here (stopped by PID).
# Usage: libcomet/tests/run.sh PATH/TO/cometd
set -uo pipefail
cometd=$(realpath "$1")
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/comet-c-XXXXXX)
passed=0
failed=0
step() { # step NAME COMMAND...
  local name=$1; shift
  if "$@" >"$work/step.log" 2>&1; then
    passed=$((passed + 1)); echo "  ok    $name"
    grep -E '^[a-z ]+: [0-9]+ passed, [0-9]+ failed$' "$work/step.log" | sed 's/^/        /'
  else
    failed=$((failed + 1)); echo "  FAIL  $name"; sed 's/^/        /' "$work/step.log"
  fi
}
cleanup() { for pid in ${daemon:-} ${upstream:-}; do kill "$pid" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

make -s clean >/dev/null
step "a user's CFLAGS=-O2 replaces the defaults and still builds" bash -c "make -s CFLAGS=-O2 >/dev/null && make -s clean >/dev/null"
step "libcomet builds with cc (-Wall -Wextra -Werror)" make -s WERROR=-Werror
step "make install PREFIX=... installs header, libraries and comet.pc" make -s install PREFIX="$work/prefix"
export PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig"
step "ldd libcomet.so.0 shows libc only" bash -c "! ldd build/libcomet.so.0 | grep -v -E 'linux-vdso|libc\\.so|ld-linux' | grep -q ."
step "SONAME is libcomet.so.0" bash -c "readelf -d build/libcomet.so.0 | grep -q 'SONAME.*libcomet.so.0'"
step "only comet_* symbols are exported" bash -c "! nm -D --defined-only build/libcomet.so.0 | awk '{print \$3}' | grep -v -E '^(comet_|LIBCOMET_)' | grep -q ."
step "only comet_* symbols are global in libcomet.a" bash -c "! nm -g --defined-only build/libcomet.a | awk 'NF==3 {print \$3}' | grep -v -E '^comet_' | grep -q ."
step "a static user may define its own fail() and grow()" bash -c "printf '%s\n' '#include <comet.h>' 'int fail(int x) { return x; }' 'int grow(void) { return 0; }' 'int main(void) { return fail(0) + grow() + (comet_version() == 0); }' > $work/clash.c && cc -Iinclude $work/clash.c build/libcomet.a -o $work/clash && $work/clash"
step "hardened as Debian builds: full RELRO, BIND_NOW, stack protector" bash -c "readelf -d build/libcomet.so.0 | grep -q BIND_NOW && readelf -l build/libcomet.so.0 | grep -q GNU_RELRO && nm -D build/libcomet.so.0 | grep -q __stack_chk_fail"
step "comet.h compiles as C89 and as C++" bash -c "echo '#include <comet.h>
int main(void) { return comet_version() == 0; }' > $work/h.c && cc -std=c89 -pedantic -Wall -Werror \$(pkg-config --cflags comet) -c $work/h.c -o $work/h.o && cp $work/h.c $work/h.cpp && c++ -Wall -Werror \$(pkg-config --cflags comet) -c $work/h.cpp -o $work/hpp.o"
for example in producer consumer private_exchange; do
  step "examples/$example.c builds with pkg-config" bash -c "cc ../examples/$example.c \$(pkg-config --cflags --libs comet) -Wl,-rpath,$work/prefix/lib -o $work/$example"
done
step "test_vectors builds" cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -g -Iinclude -o "$work/test_vectors" tests/test_vectors.c build/libcomet.a -lpthread
step "test_client builds" cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -g -Iinclude -o "$work/test_client" tests/test_client.c build/libcomet.a
step "test_keepup builds" cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -O2 -g -Iinclude -o "$work/test_keepup" tests/test_keepup.c build/libcomet.a

run=()
if command -v valgrind >/dev/null; then
  run=(valgrind -q --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect --error-exitcode=99)
fi
export COMET_SOCKET="$work/comet.sock"
"$cometd" --socket "$COMET_SOCKET" --session-grace 2 --log-level warning &
daemon=$!
"$cometd" --socket "$work/upstream.sock" --log-level warning &
upstream=$!
for _ in $(seq 200); do [ -S "$COMET_SOCKET" ] && [ -S "$work/upstream.sock" ] && break; sleep 0.05; done

step "C codec against the PROTOCOL.md vectors (valgrind)" "${run[@]}" "$work/test_vectors" ../docs/PROTOCOL.md
step "C client against a real cometd (valgrind)" "${run[@]}" "$work/test_client" "$COMET_SOCKET" "$work/upstream.sock"
step "FULL only for readers that cannot keep up (1,000,000 pushes, default ring; no valgrind)" "$work/test_keepup" "$COMET_SOCKET"
step "example: private exchange between two processes" "${run[@]}" "$work/private_exchange"
step "example: consumer in a poll loop gets a producer's notifications" bash -c "
  timeout 20 '$work/consumer' c.example > '$work/consumer.out' & consumer=\$!
  sleep 0.3
  '$work/producer' c.example 3 >/dev/null
  wait \$consumer; status=\$?
  [ \$status -eq 3 ] && [ \$(wc -l < '$work/consumer.out') -eq 3 ] && grep -q 'service event 3' '$work/consumer.out'"

kill "$daemon" "$upstream"; wait "$daemon" "$upstream" 2>/dev/null; daemon=; upstream=
echo "libcomet-suite: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
