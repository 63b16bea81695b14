#!/usr/bin/env bash
# Build the synthsr-bids image and run it on the BIDS-App test dataset (tests/cli/test_bids_app_e2e.py's
# build_dataset) with the tiny fixture model; checks the outputs and GeneratedBy[].Container.
# Opt-in from .ci/run (SYNTHSR_CI_CONTAINER=1): about 6 minutes here from scratch (image build 3.5 min, run 2 min with the cached base image).
#
# No image registry is reachable here, so the base image the Dockerfile names (debian:bookworm-slim) is
# made with debootstrap from Debian's mirror and imported under that name when it is missing.
# Sandbox notes (Firecracker VM, hybrid cgroups): crun refuses hybrid cgroups, so runc is used; the VM forbids
# raising rlimits, so nofile/nproc are given explicitly; builds use the host network, the host's CA bundle (a
# TLS-inspecting proxy) and the host's local torch wheel (download.pytorch.org is unreachable).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
TAG=${TAG:-synthsr-nipype:$(python3 -c 'import re; print(re.search(r"__version__ = \"(.+)\"", open("synthsr_nipype/__init__.py").read())[1])')}
SCRATCH=${SCRATCH:-$(mktemp -d /tmp/synthsr-container.XXXXXX)}
PODMAN=(podman --runtime runc)
LIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=1000:1000)

need=""
for tool in podman runc debootstrap; do command -v "$tool" >/dev/null 2>&1 || need="$need $tool"; done
if [ -n "$need" ]; then
  # shellcheck disable=SC2086
  apt-get install -y -q $need >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q $need >/dev/null; }
fi

if ! "${PODMAN[@]}" image exists debian:bookworm-slim; then
  echo "== debootstrap bookworm -> debian:bookworm-slim"
  rootfs=$SCRATCH/rootfs
  debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >"$SCRATCH/debootstrap.log"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | "${PODMAN[@]}" import --change 'CMD ["bash"]' - docker.io/library/debian:bookworm-slim
  rm -rf "$rootfs"
fi

build=(--network host "${LIMITS[@]}" --build-arg "IMAGE_TAG=$TAG")
if [ -d /opt/wheels ]; then
  build+=(-v /opt/wheels:/wheels:ro --build-arg PIP_FIND_LINKS=/wheels --build-arg TORCH_INDEX_URL=)
fi
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  build+=(-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/host-ca.crt:ro --build-arg PIP_CERT=/etc/ssl/host-ca.crt)
fi
echo "== build $TAG"
start=$SECONDS
"${PODMAN[@]}" build "${build[@]}" -t "$TAG" . >"$SCRATCH/build.log" 2>&1 || { tail -30 "$SCRATCH/build.log"; exit 1; }
echo "built in $((SECONDS - start)) s"

echo "== BIDS-App test dataset"
python3 -c "import sys; sys.path.insert(0, '$REPO'); from pathlib import Path; \
from tests.cli.test_bids_app_e2e import build_dataset; build_dataset(Path('$SCRATCH/bids'))"
TINY=$REPO/../shared/fixtures/tf-reference/devset/models/tiny_weights.h5
mkdir -p "$SCRATCH/out" "$SCRATCH/work"

echo "== run"
start=$SECONDS
"${PODMAN[@]}" run --rm "${LIMITS[@]}" --network none -u "$(id -u):$(id -g)" \
  -v "$SCRATCH/bids:/data:ro" -v "$SCRATCH/out:/out" -v "$SCRATCH/work:/work" -v "$TINY:/models/tiny_weights.h5:ro" \
  "$TAG" /data /out participant --model /models/tiny_weights.h5 -w /work --omp-nthreads 1 --nprocs 2
echo "ran in $((SECONDS - start)) s"

python3 - "$SCRATCH/out" "$TAG" <<'PY'
import json, sys
from pathlib import Path
out, tag = Path(sys.argv[1]), sys.argv[2]
generated = json.loads((out / "dataset_description.json").read_text())["GeneratedBy"][0]
assert generated["Container"] == {"Type": "docker", "Tag": tag}, generated
fused = sorted(p.relative_to(out).as_posix() for p in out.rglob("*desc-synthsr_T1w.nii.gz"))
assert fused == ["sub-01/anat/sub-01_desc-synthsr_T1w.nii.gz",
                 "sub-02/ses-post/anat/sub-02_ses-post_desc-synthsr_T1w.nii.gz",
                 "sub-02/ses-pre/anat/sub-02_ses-pre_desc-synthsr_T1w.nii.gz",
                 "sub-03/anat/sub-03_desc-synthsr_T1w.nii.gz"], fused
scans = list(out.rglob("*_desc-synthsr[A-Z]*_T1w.nii.gz"))
assert len(scans) == 8, scans
reports = sorted(p.name for p in out.glob("sub-*.html"))
assert reports == ["sub-01.html", "sub-02.html", "sub-03.html"], reports
figures = list(out.glob("sub-*/figures/*.svg"))
assert all(f"sub-{s}/figures/" in (out / f"sub-{s}.html").read_text() for s in ("01", "02", "03")), figures
print(f"container run OK: {len(fused)} fused images, {len(scans)} scan outputs, {len(reports)} reports "
      f"({len(figures)} figures), Container {generated['Container']}")
PY
rm -rf "$SCRATCH"
