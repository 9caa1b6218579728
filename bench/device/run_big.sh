# device call 5 (bench/device/README.md), on the machine call 4 set up: the SD1.5-shaped UNet,
# built once with the evaluations on CUDA, then verify's three ONNX checks on the CPU and on CUDA
[ -d /tmp/src ] && [ -n "$BIG" ] || { . .whl/s/setup.sh || exit 1; }
PYTHONPATH=$PYTHONPATH:/tmp/src/bench/device/stand_in timeout -s INT ${BIG_S:-480} python3 bench/eval_devices.py eval.toml --module unet_sd15 --builds auto --out $OUT/eval_devices_unet_sd15.json > $OUT/eval_devices_unet_sd15.log 2>&1
echo "== bench rc $?"; tail -c 5000 $OUT/eval_devices_unet_sd15.log
