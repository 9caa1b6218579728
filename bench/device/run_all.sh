# device call 4 (bench/device/README.md): onnxruntime-gpu in, then choose_provider, the evaluator's
# tests on CUDA, bench/eval_devices.py on the example modules, the stages' fast tests on CUDA
. .whl/s/setup.sh || exit 1
python3 - > $OUT/provider.txt 2>&1 <<'PY'
import onnxruntime as ort
import torch
print("onnxruntime", ort.__version__, ort.__file__, ort.get_available_providers())
print("torch", torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))
from trtforge.graphs.evaluate import choose_provider
print("choose_provider()", choose_provider())
PY
cat $OUT/provider.txt
T="python3 -m pytest -q -p no:cacheprovider -rfEs"
timeout -s INT 200 $T -m "not slow" tests/test_onnx_eval_cuda.py tests/test_onnx_eval_device.py tests/test_onnx_eval.py tests/verify/test_cuda_fallback.py > $OUT/pytest_eval_cuda.log 2>&1
echo "== pytest eval rc $?"; tail -25 $OUT/pytest_eval_cuda.log
M=${MODS:-"--module hostile --module hostile_ruled --module vit --module unet --module text_encoder --module vae_decoder --module decoder --module nchw_net --module lm_prefill"}
PYTHONPATH=$PYTHONPATH:/tmp/src/bench/device/stand_in timeout -s INT ${BENCH_S:-300} python3 bench/eval_devices.py eval.toml $M --out $OUT/eval_devices_examples.json > $OUT/eval_devices_examples.log 2>&1
echo "== bench rc $?"; tail -c 4000 $OUT/eval_devices_examples.log
timeout -s INT ${STAGES_S:-120} $T -m "not slow" tests/graph_passes tests/precision_rules tests/verify --junitxml=/tmp/junit_stages.xml > $OUT/pytest_stages_cuda.log 2>&1
echo "== pytest stages rc $?"; tail -15 $OUT/pytest_stages_cuda.log
python3 - > /tmp/failed.txt <<'PY'
import xml.etree.ElementTree as ET
for tc in ET.parse("/tmp/junit_stages.xml").getroot().iter("testcase"):
    if tc.find("failure") is not None or tc.find("error") is not None:
        print(tc.get("classname").replace(".", "/") + ".py::" + tc.get("name"))
PY
if [ -s /tmp/failed.txt ]; then
  mapfile -t F < /tmp/failed.txt  # parametrised ids hold spaces
  echo "== the failures again on the CPU (TRTFORGE_EVAL_DEVICE=cpu)"
  TRTFORGE_EVAL_DEVICE=cpu timeout -s INT 90 $T "${F[@]}" > $OUT/pytest_stages_failures_on_cpu.log 2>&1; tail -12 $OUT/pytest_stages_failures_on_cpu.log
fi
[ -n "$BIG" ] && bash "$S"/run_big.sh
