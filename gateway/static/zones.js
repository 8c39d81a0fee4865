// Wall-clock times in a named zone (IANA), without a library: what a person types in a datetime-local field is a
// time in the campaign's zone, while the API keeps instants (UTC). Intl knows every zone's offsets; we ask it.

// The zone's offset from UTC, in milliseconds, at an instant.
function offsetAt(ms, zone) {
  const parts = Object.fromEntries(new Intl.DateTimeFormat("en-US", { timeZone: zone, hourCycle: "h23",
    year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" })
    .formatToParts(new Date(ms)).map((p) => [p.type, p.value]));
  const wall = Date.UTC(+parts.year, +parts.month - 1, +parts.day, +parts.hour % 24, +parts.minute, +parts.second);
  return wall - Math.floor(ms / 1000) * 1000;
}

// "2026-12-07T09:30" in `zone` -> "2026-12-07T08:30:00Z" (ISO, UTC), or null when it is not a time. A wall time that
// a clock change skips (02:30 on a spring-forward night) becomes the instant one hour later, as clocks show it.
export function instantIn(wall, zone) {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})$/.exec(wall || "");
  if (!m) return null;
  const guess = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5]);
  if (Number.isNaN(guess)) return null;
  let ms = guess - offsetAt(guess, zone);
  ms = guess - offsetAt(ms, zone); // once more: the offset at the instant itself, not at the guess
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

// An instant (ISO) -> its wall time in `zone`, as a datetime-local field wants it ("2026-12-07T09:30").
export function wallTimeIn(iso, zone) {
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) return "";
  const local = new Date(ms + offsetAt(ms, zone));
  return local.toISOString().slice(0, 16);
}
