# sourced by run_all.sh on the device: join onnxruntime-gpu's 4 parts (3 kept in /tmp/parts by the
# earlier calls, the last carried now) and unpack it into /tmp/site (call 1 put the small wheels
# there), the worktree (.whl/s/src.tar) into /tmp/src; torch's CUDA libraries on LD_LIBRARY_PATH
S=$(pwd)/.whl/s
[ -d /tmp/site/polygraphy ] || { echo "no /tmp/site/polygraphy: call 1 (probe.sh) did not run on this machine"; exit 1; }
if [ ! -d /tmp/site/onnxruntime ]; then
  mkdir -p /tmp/site
  [ -f .whl/p3/xpart3 ] && cp .whl/p3/xpart3 /tmp/parts/
  sha256sum /tmp/parts/*
  UNXZ="xz -dc -T0"; command -v xz >/dev/null || UNXZ='python3 -c "import lzma,shutil,sys;shutil.copyfileobj(lzma.open(sys.stdin.buffer),sys.stdout.buffer,1<<22)"'
  cat /tmp/parts/xpart0 /tmp/parts/xpart1 /tmp/parts/xpart2 /tmp/parts/xpart3 | eval "$UNXZ" | tar -xf - -C /tmp/site || exit 1
fi
rm -rf /tmp/src && mkdir -p /tmp/src && tar -xf "$S"/src.tar -C /tmp/src || exit 1
SP=$(python3 -c "import site;print(site.getsitepackages()[0])")
export LD_LIBRARY_PATH=$(ls -d "$SP"/nvidia/*/lib 2>/dev/null | tr '\n' ':')$LD_LIBRARY_PATH
export PYTHONPATH=/tmp/site:/tmp/src PYTHONUNBUFFERED=1
cat /tmp/src/engines.toml /tmp/src/bench/device/hostile.toml /tmp/src/bench/device/big.toml > /tmp/src/eval.toml
cd /tmp/src
