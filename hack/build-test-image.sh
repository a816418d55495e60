#!/usr/bin/env bash
# Builds the rkube test image: a one-layer OCI image archive holding Debian's busybox-static,
# with every applet linked to /bin/busybox. No registry, no download.
#
#   hack/build-test-image.sh [OUTPUT.tar]     (default: target/test-image/busybox-oci.tar)
#
# The archive names itself docker.io/library/busybox-local:v1 (annotation
# io.containerd.image.name), so `ctr -n rkube image import OUTPUT.tar` imports it under that
# name and pods use `image: busybox-local:v1` (tagged, so the default imagePullPolicy is
# IfNotPresent and the kubelet never asks a registry for it). The build is reproducible:
# same busybox, same bytes.
# Needs busybox-static (make deps).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-${repo_root}/target/test-image/busybox-oci.tar}"
busybox=/bin/busybox
[[ -x "${busybox}" ]] || { echo "build-test-image: ${busybox} missing: run 'make deps' (busybox-static)" >&2; exit 1; }
file_type="$(LC_ALL=C head -c 4 "${busybox}" | od -An -c | tr -d ' ')"
[[ "${file_type}" == "177ELF" ]] || { echo "build-test-image: ${busybox} is not an ELF binary" >&2; exit 1; }

arch="$(dpkg --print-architecture 2>/dev/null || echo amd64)"
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
rootfs="${work}/rootfs"
mkdir -p "${rootfs}"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,proc,sys,dev,root,var,run}
chmod 1777 "${rootfs}/tmp"
cp "${busybox}" "${rootfs}/bin/busybox"
for applet in $("${rootfs}/bin/busybox" --list-full); do
    [[ "${applet}" == bin/busybox ]] && continue
    mkdir -p "${rootfs}/$(dirname "${applet}")"
    ln -sf /bin/busybox "${rootfs}/${applet}"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "${rootfs}/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "${rootfs}/etc/group"

oci="${work}/oci"
mkdir -p "${oci}/blobs/sha256"
tar --sort=name --numeric-owner --owner=0 --group=0 --mtime=@0 -C "${rootfs}" -cf "${work}/layer.tar" .
diff_id="$(sha256sum "${work}/layer.tar" | cut -d' ' -f1)"
gzip -9 -n -c "${work}/layer.tar" > "${work}/layer.tar.gz"
layer_digest="$(sha256sum "${work}/layer.tar.gz" | cut -d' ' -f1)"
layer_size="$(stat -c %s "${work}/layer.tar.gz")"
mv "${work}/layer.tar.gz" "${oci}/blobs/sha256/${layer_digest}"

blob() { # writes stdin as a blob, prints "<digest> <size>"
    local tmp="${work}/blob" digest
    cat > "${tmp}"
    digest="$(sha256sum "${tmp}" | cut -d' ' -f1)"
    mv "${tmp}" "${oci}/blobs/sha256/${digest}"
    echo "${digest} $(stat -c %s "${oci}/blobs/sha256/${digest}")"
}

read -r config_digest config_size < <(printf '%s' \
    '{"architecture":"'"${arch}"'","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:'"${diff_id}"'"]},"history":[{"created_by":"rkube hack/build-test-image.sh (busybox-static)"}]}' \
    | blob)
read -r manifest_digest manifest_size < <(printf '%s' \
    '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:'"${config_digest}"'","size":'"${config_size}"'},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:'"${layer_digest}"'","size":'"${layer_size}"'}]}' \
    | blob)
printf '%s' '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:'"${manifest_digest}"'","size":'"${manifest_size}"',"platform":{"architecture":"'"${arch}"'","os":"linux"},"annotations":{"io.containerd.image.name":"docker.io/library/busybox-local:v1","org.opencontainers.image.ref.name":"v1"}}]}' \
    > "${oci}/index.json"
printf '%s' '{"imageLayoutVersion":"1.0.0"}' > "${oci}/oci-layout"

mkdir -p "$(dirname "${out}")"
tar --sort=name --numeric-owner --owner=0 --group=0 --mtime=@0 -C "${oci}" -cf "${out}.tmp" oci-layout index.json blobs
mv "${out}.tmp" "${out}"
echo "build-test-image: ${out} (docker.io/library/busybox-local:v1, layer sha256:${layer_digest})"
