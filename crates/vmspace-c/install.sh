#!/bin/sh
# Install libvmspace (shared and static), vm_reclaim.h and vmspace.pc under PREFIX (default /usr/local).
#   cargo build --release -p vmspace-c && crates/vmspace-c/install.sh [PREFIX] [TARGET_DIR/PROFILE]
# Then: cc prog.c $(pkg-config --cflags --libs vmspace)   (PKG_CONFIG_PATH=PREFIX/lib/pkgconfig if
# PREFIX is not a standard one; LD_LIBRARY_PATH=PREFIX/lib to run, or link -static against libvmspace.a).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
prefix=${1:-/usr/local}
build=${2:-$here/../../target/release}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$here/../../Cargo.toml" | head -1)
mkdir -p "$prefix/lib/pkgconfig" "$prefix/include"
install -m 0755 "$build/libvmspace.so" "$prefix/lib/libvmspace.so"
install -m 0644 "$build/libvmspace.a" "$prefix/lib/libvmspace.a"
install -m 0644 "$here/include/vm_reclaim.h" "$prefix/include/vm_reclaim.h"
sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" "$here/vmspace.pc.in" > "$prefix/lib/pkgconfig/vmspace.pc"
echo "installed libvmspace $version under $prefix"
