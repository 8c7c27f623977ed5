#!/bin/sh
# install_test.sh BUILD_DIR THIS_DIR [SANITIZER] - installs the build into a
# temporary prefix (cmake --install --prefix) and builds tests/install/app.c
# against it four ways: pkg-config (shared and --static) and find_package
# (dkv::dkv and dkv::dkv_static); runs each and the installed dkv command.
# Nothing leaves the machine.  Exit 77 (skipped) without a C compiler or
# pkg-config.
set -eu
build=$1
here=$2
sanitize=${3:-}
cc=${CC:-cc}
command -v "$cc" >/dev/null 2>&1 || { echo "no C compiler"; exit 77; }
command -v pkg-config >/dev/null 2>&1 || { echo "no pkg-config"; exit 77; }

tmp=$(mktemp -d /tmp/dkv-install-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log"

# A sanitized library needs its runtime in the program too.
cflags=""
case "$sanitize" in
  address) cflags="-fsanitize=address,undefined" ;;
  thread)  cflags="-fsanitize=thread" ;;
esac

for f in bin/dkv include/dkv.h; do
  test -e "$prefix/$f" || { echo "missing $f"; exit 1; }
done
pc=$(find "$prefix" -name dkv.pc)
libdir=$(dirname "$(dirname "$pc")")
for f in libdkv.a libdkv.so libdkv.so.0; do
  test -e "$libdir/$f" || { echo "missing $libdir/$f"; exit 1; }
done
soname=$(readelf -d "$libdir/libdkv.so" 2>/dev/null | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
test "$soname" = "libdkv.so.0" || { echo "SONAME is '$soname'"; exit 1; }

export PKG_CONFIG_PATH="$(dirname "$pc")"
test "$(pkg-config --modversion dkv)" = "0.1.0"
# shellcheck disable=SC2046
$cc $cflags "$here/app.c" -o "$tmp/app_pc" $(pkg-config --cflags --libs dkv)
# shellcheck disable=SC2046
$cc $cflags "$here/app.c" -o "$tmp/app_pc_static" -static-libgcc \
  $(pkg-config --cflags dkv) "$libdir/libdkv.a" $(pkg-config --static --libs-only-l dkv | sed 's/-ldkv//')
LD_LIBRARY_PATH="$libdir" "$tmp/app_pc" "$tmp/db1"
"$tmp/app_pc_static" "$tmp/db2"

cmake -S "$here" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_C_FLAGS="$cflags" >"$tmp/configure.log" 2>&1 || { cat "$tmp/configure.log"; exit 1; }
cmake --build "$tmp/consumer" >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log"; exit 1; }
"$tmp/consumer/app_shared" "$tmp/db3"
"$tmp/consumer/app_static" "$tmp/db4"

"$prefix/bin/dkv" --pool-size=16M get "$tmp/db4" installed | grep -qx yes
echo "install test: ok ($prefix)"
