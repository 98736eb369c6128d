#!/system/bin/sh
# quantlab energy sampler: prints timestamped battery gauge and power-monitor readings.
# usage: sh sampler.sh PHASE SECONDS INTERVAL_S      (SECONDS: whole seconds)
# output lines: "<uptime_s> <phase> battery.current <raw>", "... battery.voltage <raw>",
#               "... battery.status <text>", "... odpm <raw line of energy_value>"
# Plain POSIX sh (mksh/toybox on the phone): no awk, integer arithmetic on /proc/uptime.
# QL_ROOT prefixes every sysfs path (empty on a phone; a sandbox folder in tests).
R="${QL_ROOT:-}"
PHASE="$1"
SECS="${2:-3}"
IVAL="${3:-0.1}"
BAT="$R/sys/class/power_supply/battery"
uptime_cs() { read -r up _ < /proc/uptime; echo "${up%.*}${up#*.}"; }
start=$(uptime_cs)
end=$((start + SECS * 100))
status=$(cat "$BAT/status" 2>/dev/null)
printf "%d.%02d %s battery.status %s\n" $((start / 100)) $((start % 100)) "$PHASE" "${status:-unknown}"
while :; do
  now=$(uptime_cs)
  t=$(printf "%d.%02d" $((now / 100)) $((now % 100)))
  if [ -r "$BAT/current_now" ]; then echo "$t $PHASE battery.current $(cat "$BAT/current_now")"; fi
  if [ -r "$BAT/voltage_now" ]; then echo "$t $PHASE battery.voltage $(cat "$BAT/voltage_now")"; fi
  for f in "$R"/sys/bus/iio/devices/iio:device*/energy_value; do
    [ -r "$f" ] || continue
    while read -r line; do echo "$t $PHASE odpm $line"; done < "$f"
  done
  [ "$now" -ge "$end" ] && break
  sleep "$IVAL"
done
