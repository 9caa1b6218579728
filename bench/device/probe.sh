# device call 1 of 4 (bench/device/README.md): keep part 0 of onnxruntime-gpu, and say what the machine has
mkdir -p /tmp/parts && cp .whl/p0/xpart0 /tmp/parts/
echo "== checkout: $(cat .whl/w/WHO 2>/dev/null) $(git log --oneline -1 2>/dev/null | cut -c1-60)"
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
