# device call 1 of 4 (bench/device/README.md): the small wheels into /tmp/site, part 0 of
# onnxruntime-gpu kept, and what the machine has
mkdir -p /tmp/parts /tmp/site && cp .whl/p0/xpart0 /tmp/parts/
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/w/*.whl
echo "== checkout: $(cat .whl/s/WHO 2>/dev/null) $(git log --oneline -1 2>/dev/null | cut -c1-60)"
nvidia-smi -L; nproc; which xz
python3 - <<'PY'
import importlib, sys
print(sys.version)
for n in ["torch", "onnx", "onnxruntime", "numpy", "polygraphy", "onnx_graphsurgeon", "click", "pytest", "hypothesis",
          "diffusers", "transformers", "onnxscript", "onnx_ir", "ml_dtypes", "attr", "sortedcontainers", "jsonschema", "xdist"]:
    try:
        m = importlib.import_module(n)
        print(n, getattr(m, "__version__", "?"))
    except Exception as e:
        print(n, "MISSING", type(e).__name__)
import onnxruntime as o
print("image onnxruntime providers", o.get_available_providers())
PY
SP=$(python3 -c "import site;print(site.getsitepackages()[0])"); echo "$SP"; ls "$SP"/nvidia; ls -d "$SP"/nvidia/*/lib
ls /usr/local/cuda/lib64 2>/dev/null | grep -E "libcudnn|libcublas|libcufft|libcurand|libcudart" | head
sha256sum /tmp/parts/*
