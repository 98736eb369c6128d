#!/system/bin/sh
# quantlab outputs loop: every sample of a set through one benchmark_model launch each, on the
# phone, its outputs appended to one file that the host pulls once.
# usage: sh outputs.sh DIR N BYTES TOOL ARGS...
#   DIR/input<k>.bin holds the N samples of model input k, BYTES[k] bytes each (BYTES is
#   comma-separated, one number per input); before launch i, sample i of each input is cut to
#   DIR/sample<k>.bin (the files ARGS' --input_layer_value_files name); TOOL ARGS writes its
#   outputs to DIR/out.bin (--output_filepath), appended to DIR/outputs.bin.
# stdout: "quantlab-outputs: N samples" and the last launch's output; on a failed launch
# "quantlab-outputs: sample I: exit CODE" and that launch's output, with its exit code.
# Plain POSIX sh (mksh/toybox on the phone). QL_ROOT prefixes DIR and TOOL (empty on a
# phone; a sandbox folder in tests).
R="${QL_ROOT:-}"
DIR="$1"
N="$2"
BYTES="$3"
TOOL="$4"
shift 4
rm -f "$R$DIR/outputs.bin" "$R$DIR/launch.log"
i=0
while [ "$i" -lt "$N" ]; do
  k=0
  for b in $(echo "$BYTES" | tr ',' ' '); do
    if ! dd if="$R$DIR/input$k.bin" of="$R$DIR/sample$k.bin" bs="$b" skip="$i" count=1 \
        2>/dev/null; then
      echo "quantlab-outputs: sample $i: cannot cut input $k"
      exit 3
    fi
    k=$((k + 1))
  done
  rm -f "$R$DIR/out.bin"
  "$R$TOOL" "$@" > "$R$DIR/launch.log" 2>&1
  code=$?
  if [ "$code" -ne 0 ] || [ ! -f "$R$DIR/out.bin" ]; then
    echo "quantlab-outputs: sample $i: exit $code"
    cat "$R$DIR/launch.log"
    [ "$code" -ne 0 ] && exit "$code"
    exit 4
  fi
  cat "$R$DIR/out.bin" >> "$R$DIR/outputs.bin"
  i=$((i + 1))
done
echo "quantlab-outputs: $N samples"
cat "$R$DIR/launch.log"
