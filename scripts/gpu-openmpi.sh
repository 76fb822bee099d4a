#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Makes a relocatable Open MPI runtime (Debian 12's 4.1, unpacked from its packages with
# apt-get download + dpkg -x) for a machine that has no Open MPI of its own, then runs
# `mpirun -np 2` from it with the system's Open MPI kept out of the way. Used by gpu-prepare.sh.
# Usage: scripts/gpu-openmpi.sh DEST
#   DEST/usr/...          the packages' files, pruned to what one node needs (no UCX, libfabric,
#                         PSM, verbs: the plugins that want them are dropped; pml ob1 with the
#                         btls self, vader and tcp is all a single-node job uses);
#   DEST/openmpi-env.sh   `source` it: PATH, LD_LIBRARY_PATH, OPAL_PREFIX and friends.
set -euo pipefail

DEST=${1:?usage: scripts/gpu-openmpi.sh DEST}
die() { echo "gpu-openmpi: $*" >&2; exit 1; }
# Open MPI, its PMIx/hwloc/libevent, and what those load at run time besides glibc.
PACKAGES=(openmpi-bin openmpi-common libopenmpi3 libpmix2 libhwloc15 libevent-core-2.1-7
  libevent-pthreads-2.1-7 libmunge2 libudev1 zlib1g)
ARCH_LIB=usr/lib/x86_64-linux-gnu
PLUGINS=$ARCH_LIB/openmpi/lib/openmpi3
SYSTEM='linux-vdso|ld-linux|/libc\.so|/libm\.so|/libstdc\+\+|/libgcc_s|/libpthread|/libdl\.so|/librt\.so|/libresolv|/libutil\.so'

rm -rf "$DEST"
mkdir -p "$DEST"
DEST=$(cd "$DEST" && pwd)
DEBS=$(mktemp -d)
trap 'rm -rf "$DEBS"' EXIT
(cd "$DEBS" && apt-get download -qq "${PACKAGES[@]}" 2>/dev/null) || die "apt-get download ${PACKAGES[*]} failed"
for deb in "$DEBS"/*.deb; do
  dpkg -x "$deb" "$DEST"
  echo "gpu-openmpi: $(basename "$deb")"
done

# Some packages (zlib1g, libudev1) still install into /lib: move those beside the rest.
if [ -d "$DEST/lib/x86_64-linux-gnu" ]; then
  mkdir -p "$DEST/$ARCH_LIB"
  cp -a "$DEST/lib/x86_64-linux-gnu/." "$DEST/$ARCH_LIB/"
  rm -rf "$DEST/lib/x86_64-linux-gnu"
fi

# Prune: documentation, compilers' wrappers and headers, Fortran/Java/OpenSHMEM, and every
# plugin that needs a network stack we do not ship.
rm -rf "$DEST"/usr/share/doc "$DEST"/usr/share/man "$DEST"/usr/share/lintian "$DEST"/lib/udev \
  "$DEST"/usr/lib/x86_64-linux-gnu/pmix2/include
(cd "$DEST/$ARCH_LIB" && rm -f libmpi_mpifh* libmpi_usempi* libmpi_java* liboshmem* libompitrace* \
  libmca_common_ofi* libmca_common_ucx* libmca_common_verbs*)
(cd "$DEST/$PLUGINS" && rm -f mca_*ucx*.so mca_*ofi*.so mca_*psm*.so mca_btl_openib.so \
  mca_reachable_netlink.so mca_*oshmem* mca_atomic_* mca_memheap_* mca_scoll_* mca_spml_* mca_sshmem_*)
find "$DEST/usr/bin" -mindepth 1 -not -name orterun -not -name orted -not -name ompi_info -delete
ln -sfn orterun "$DEST/usr/bin/mpirun"
ln -sfn orterun "$DEST/usr/bin/mpiexec"

# Whatever is left must load from DEST or glibc/libstdc++ alone.
bad=""
while IFS= read -r f; do
  out=$(LD_LIBRARY_PATH="$DEST/$ARCH_LIB" ldd "$f" 2>&1) || continue
  ext=$(awk '$3 ~ /^\// {print $3} /not found/ {print $1 " (not found)"}' <<<"$out" |
    grep -v "^$DEST/" | grep -Ev "$SYSTEM" | tr '\n' ' ' || true)
  [ -n "$ext" ] && bad+="  ${f#"$DEST"/}: $ext"$'\n'
done < <(find "$DEST/usr/bin" "$DEST/$ARCH_LIB" -type f \( -name '*.so*' -o -perm -u+x \))
[ -z "$bad" ] || die "libraries from outside the bundle:"$'\n'"$bad"

cat >"$DEST/openmpi-env.sh" <<'EOF'
# SPDX-License-Identifier: Apache-2.0
# Environment for the Open MPI unpacked beside this file (made by scripts/gpu-openmpi.sh).
# Its prefix is /usr in the packages: OPAL_PREFIX moves the plugins (pkglibdir) and help files
# (pkgdatadir); sysconfdir and PMIx's own folders are absolute there, so they are set too.
_ompi_root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export PATH="$_ompi_root/usr/bin${PATH:+:$PATH}"
export LD_LIBRARY_PATH="$_ompi_root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export OPAL_PREFIX="$_ompi_root/usr"
export OPAL_SYSCONFDIR="$_ompi_root/etc/openmpi"
export PMIX_PREFIX="$_ompi_root/usr/lib/x86_64-linux-gnu/pmix2"
export PMIX_MCA_mca_base_component_path="$_ompi_root/usr/lib/x86_64-linux-gnu/pmix2/lib/pmix"
# One node: no launcher agent (ssh), shared memory and loopback TCP between ranks.
export OMPI_MCA_plm=isolated
export OMPI_MCA_pml=ob1
export OMPI_MCA_btl=self,vader,tcp
export OMPI_MCA_btl_vader_single_copy_mechanism=none
# Containers run as root.
export OMPI_ALLOW_RUN_AS_ROOT=1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
unset _ompi_root
EOF
echo "gpu-openmpi: $DEST ($(du -sh "$DEST" | cut -f1)); source $DEST/openmpi-env.sh"

# Self-test: two ranks from the bundle, with only the bundle's Open MPI on the paths.
(
  export PATH=/usr/bin:/bin LD_LIBRARY_PATH=
  # shellcheck disable=SC1091
  source "$DEST/openmpi-env.sh"
  [ "$(command -v mpirun)" = "$DEST/usr/bin/mpirun" ] || die "mpirun is $(command -v mpirun)"
  out=$(timeout 60 mpirun -np 2 --oversubscribe sh -c 'echo rank=$OMPI_COMM_WORLD_RANK' 2>&1) ||
    die "mpirun -np 2 failed: $out"
  [ "$(grep -c '^rank=' <<<"$out")" -eq 2 ] || die "mpirun -np 2 printed: $out"
  echo "gpu-openmpi: self-test: mpirun -np 2 from the bundle ran 2 ranks"
)
