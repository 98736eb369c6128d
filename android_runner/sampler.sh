#!/system/bin/sh
# quantlab energy sampler: prints timestamped battery gauge and power-monitor readings.
# usage: sh sampler.sh PHASE SECONDS INTERVAL_S [WATCH STOP]   (SECONDS: whole seconds)
# output lines: "<uptime_s> <phase> battery.current <raw>", "... battery.voltage <raw>",
#               "... battery.status <text>", "... odpm <raw line of energy_value>"
# With WATCH (the runner's output file) each reading ends with "... log.bytes <B> <A>": the
# file's size before and after the reading, so the host can tell which readings fell inside
# the runner's timed loop from what the runner had printed; the sampler stops once the file
# STOP exists (the host writes it when the runner has exited), or after SECONDS.
# stderr: "sampler: <what> <the error the phone gave>" for each sensor it cannot read; when
# it can read neither the gauge (current_now and voltage_now) nor any rail it exits 3, so
# the host reports the phone's own error instead of guessing.
# Plain POSIX sh (mksh/toybox on the phone): no awk, integer arithmetic on /proc/uptime.
# QL_ROOT prefixes every sysfs path (empty on a phone; a sandbox folder in tests).
R="${QL_ROOT:-}"
PHASE="$1"
SECS="${2:-3}"
IVAL="${3:-0.1}"
WATCH="${4:-}"
STOP="${5:-}"
BAT="$R/sys/class/power_supply/battery"
uptime_cs() { read -r up _ < /proc/uptime; echo "${up%.*}${up#*.}"; }
size() { if [ -e "$R$WATCH" ]; then n=$(wc -c < "$R$WATCH"); echo $((n)); else echo 0; fi; }
# readable FILE WHAT: 0 when FILE can be read, else print the phone's own error to stderr
readable() {
  if err=$(cat "$1" 2>&1 >/dev/null); then return 0; fi
  echo "sampler: $2: ${err:-cannot read $1}" >&2
  return 1
}
gauge=1
readable "$BAT/current_now" "battery current" || gauge=0
readable "$BAT/voltage_now" "battery voltage" || gauge=0
rails=0
for f in "$R"/sys/bus/iio/devices/iio:device*/energy_value; do
  [ -e "$f" ] || continue
  if readable "$f" "power-monitor rails"; then rails=1; fi
done
if [ "$gauge" -eq 0 ] && [ "$rails" -eq 0 ]; then
  echo "sampler: nothing to sample: no readable battery gauge and no readable power-monitor rails (iio:device*/energy_value)" >&2
  exit 3
fi
start=$(uptime_cs)
end=$((start + SECS * 100))
status=$(cat "$BAT/status" 2>/dev/null)
printf "%d.%02d %s battery.status %s\n" $((start / 100)) $((start % 100)) "$PHASE" "${status:-unknown}"
while :; do
  now=$(uptime_cs)
  t=$(printf "%d.%02d" $((now / 100)) $((now % 100)))
  [ -n "$WATCH" ] && before=$(size)
  if [ "$gauge" -eq 1 ]; then
    echo "$t $PHASE battery.current $(cat "$BAT/current_now")"
    echo "$t $PHASE battery.voltage $(cat "$BAT/voltage_now")"
  fi
  for f in "$R"/sys/bus/iio/devices/iio:device*/energy_value; do
    [ -r "$f" ] || continue
    while read -r line; do echo "$t $PHASE odpm $line"; done < "$f"
  done
  [ -n "$WATCH" ] && echo "$t $PHASE log.bytes $before $(size)"
  [ "$now" -ge "$end" ] && break
  [ -n "$STOP" ] && [ -e "$R$STOP" ] && break
  sleep "$IVAL"
done
