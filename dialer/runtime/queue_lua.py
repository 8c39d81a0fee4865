"""The Lua scripts of the contact queue (dialer/runtime/queues.py has the layout and the Python side).

An entry is one string of fields joined by \\x1f (unit separator, stripped from values when encoding):
  1 contact id, 2 E.164, 3 country, 4 postal code, 5 state, 6 zones (comma-joined), 7 priority 0-9,
  8 attempts so far, 9 last step (compact JSON, "" before the first)
Every script's KEYS begin with the ten ready lists (ready:0 .. ready:9, priority 9 dialed first); a script that
reads or writes contacts waiting for a retry ends its KEYS with the WAIT_LISTS wait lists. Redis 6.2: nothing newer
than LPOP with a count.

Waiting for a retry (issue 18: a zset member cost about 198 B, a list element about its length + 3): an item is
"<due, integer ms, rounded up>\x1f<entry>" in one of three levels of lists, the wait wheel:
  wait:0 .. wait:31   a minute of due times each (floor(due / 1 min) mod 32): due within 32 min (a lap)
  wait:32 .. wait:79  a lap (32 min) each (floor(due / 32 min) mod 48): due within 25.6 h
  wait:far            due later
The zset `wait:due` maps each non-empty list to when a claim must look at it: a minute list's earliest due time; a
lap list's and the far list's a lap (resp. 25.6 h) before theirs. A claim reads only the lists whose time has come:
it promotes the items due (due <= now: never early) to ready, moves a lap list's items (all due within 2 laps by
then) into the minute lists and the far list's items due within 2 x 25.6 h into the lap lists, and writes the
list's time again. So an item is read once on each level it passes, and a minute list a few times while its
minute passes; a list holds few laps, so the fixed keys hold any delay and every script names its keys (one hash
slot {T}). The sorted set `wait` of the layout before (entry -> due seconds) is still read by every script and
drained as its contacts come due (upgrade_layout() moves it into the far list, whence the next claim sorts it).
"""

from __future__ import annotations

MAX_PRIORITY = 9
PROMOTE_BATCH = 1000  # due retries moved to ready per claim call (bounds the script's run time)
READY = MAX_PRIORITY + 1  # number of ready lists: KEYS[1..READY]
MINUTE_LISTS = 32  # wait lists of a minute each (fixed keys: every script names its keys)
SLOT_MS = 60_000
LAP_LISTS = 48  # wait lists of a lap (MINUTE_LISTS minutes) each
FAR = MINUTE_LISTS + LAP_LISTS  # the far list's number
WAIT_LISTS = FAR + 1
LAP_MS = MINUTE_LISTS * SLOT_MS
FAR_MS = LAP_LISTS * LAP_MS  # 25.6 h

_PRELUDE = r"""
local SEP = '\31'
local function split(s)
  local out, i = {}, 1
  while true do
    local j = string.find(s, SEP, i, true)
    if not j then out[#out + 1] = string.sub(s, i); return out end
    out[#out + 1] = string.sub(s, i, j - 1)
    i = j + 1
  end
end
local function join(f) return table.concat(f, SEP, 1, 9) end
-- the wait wheel (queue_lua's docstring): KEYS[base + 1 + n] is list n (0 .. FAR); `idx` (wait:due) maps a list to
-- when a claim must look at it
local L1, SLOT, L2 = L1_N, SLOT_N, L2_N
local FAR, LAP = L1 + L2, L1 * SLOT
local FAR_LAP = L2 * LAP
local function wait_item(item)  -- due (ms), entry
  local j = string.find(item, SEP, 1, true)
  return tonumber(string.sub(item, 1, j - 1)), string.sub(item, j + 1)
end
local function wait_due(item) return tonumber(string.match(item, '^%d+')) end
-- the list for an item due at d: a minute list before `near`, a lap list before `far`, else the far list
local function wait_list(d, near, far)
  if d < near then return math.floor(d / SLOT) % L1 end
  if d < far then return L1 + math.floor(d / LAP) % L2 end
  return FAR
end
local function wait_score(n, first)
  if n < L1 then return first end
  if n < FAR then return first - LAP end
  return first - FAR_LAP
end
local function wait_put(idx, base, n, d, entry)
  redis.call('RPUSH', KEYS[base + 1 + n], string.format('%.0f', d) .. SEP .. entry)
  local score = wait_score(n, d)
  local first = redis.call('ZSCORE', idx, n)
  if not first or tonumber(first) > score then redis.call('ZADD', idx, score, n) end
end
-- an entry waiting until d (ms), settled at now (ms)
local function wait_add(idx, base, d, entry, now)
  wait_put(idx, base, wait_list(d, now + LAP, now + FAR_LAP), d, entry)
end
-- write a list's time again (after items left it); gone when the list is empty
local function wait_reindex(idx, base, n)
  local first
  for _, item in ipairs(redis.call('LRANGE', KEYS[base + 1 + n], 0, -1)) do
    local d = wait_due(item)
    if not first or d < first then first = d end
  end
  if first then redis.call('ZADD', idx, wait_score(n, first), n) else redis.call('ZREM', idx, n) end
end
local function push_all(key, items)
  for i = 1, #items, 500 do redis.call('RPUSH', key, unpack(items, i, math.min(i + 499, #items))) end
end
-- every waiting item, list by list: {list number, due ms, entry, item}
local function wait_all(base)
  local out = {}
  for slot = 0, FAR do
    for _, item in ipairs(redis.call('LRANGE', KEYS[base + 1 + slot], 0, -1)) do
      local d, entry = wait_item(item)
      out[#out + 1] = {slot, d, entry, item}
    end
  end
  return out
end
local function ready_key(f)
  local p = tonumber(f[7]) or 0
  if p < 0 then p = 0 elseif p > 9 then p = 9 end
  return KEYS[p + 1]
end
-- a contact the whole-list loader queued keeps its final in `final`; one of the record's window waits in `leaving`
-- for the move to the record
local function final_for(id, final_key, known, leaving)
  if redis.call('SISMEMBER', known, id) == 1 then return final_key end
  return leaving
end
local function tally(at, id, reason, detail, attempts, disposition, final_key, tally_key)
  redis.call('HSET', final_key, id, cjson.encode({reason = reason, detail = detail, at = at, attempts = attempts,
                                                  disposition = disposition}))
  redis.call('HINCRBY', tally_key, 'final', 1)
  redis.call('HINCRBY', tally_key, 'r:' .. reason, 1)
  if reason == 'gate_denied' then redis.call('HINCRBY', tally_key, 'd:' .. (detail or ''), 1) end
end
"""


def script(body: str) -> str:
    return (_PRELUDE + body).replace("L1_N", str(MINUTE_LISTS)).replace("SLOT_N", str(SLOT_MS)).replace(
        "L2_N", str(LAP_LISTS))


# Load contacts. KEYS: ready0-9, final, tally, window, phones, known, leaving. ARGV: mode, at, gen, after, then per
# contact: id, kind (q: queue the entry, n: final without a call, reason in `entry`, d: duplicate of `detail`),
# entry, detail.
# mode "w" (the record's window): only if the window's generation is still `gen` (nothing moved to the record or
# rescanned since the page was read), and the cursor moves to `after` in the same step; a number the whole-list
# loader queued (phones) makes the contact a duplicate. mode "t" (the whole-list loader from Redis's contact store):
# a contact already in `known` is skipped, a number already in `phones` makes it a duplicate.
# Returns {added, known, duplicates, no_number} or {-1} (stale page: read it again).
LOAD = script(r"""
local at = tonumber(ARGV[2])
local w = READY_N
local final_key, tally_key, window, phones, known = KEYS[w + 1], KEYS[w + 2], KEYS[w + 3], KEYS[w + 4], KEYS[w + 5]
local mode = ARGV[1]
if mode == 'w' then final_key = KEYS[w + 6] end  -- the window's finals leave Redis for the record
if mode == 'w' then
  if (redis.call('HGET', window, 'gen') or '0') ~= ARGV[3] then return {-1} end
  redis.call('HSET', window, 'after', ARGV[4])
  redis.call('HINCRBY', window, 'gen', 1)
  redis.call('HDEL', window, 'exhausted')
end
local added, seen, dup, nonum = 0, 0, 0, 0
for i = 5, #ARGV, 4 do
  local id, kind, entry, detail = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local new = true
  if mode == 't' and redis.call('SADD', known, id) == 0 then new = false end
  if not new then
    seen = seen + 1
  else
    redis.call('HINCRBY', tally_key, 'taken', 1)
    if kind == 'q' then
      local f = split(entry)
      local other = redis.call('HGET', phones, f[2])
      if other and other ~= id then kind, detail = 'd', other end
      if kind == 'q' then
        if mode == 't' then redis.call('HSET', phones, f[2], id) end
        redis.call('RPUSH', ready_key(f), entry)
        added = added + 1
      end
    end
    if kind == 'd' then
      tally(at, id, 'duplicate_number', detail, 0, nil, final_key, tally_key)
      dup = dup + 1
    elseif kind == 'n' then
      tally(at, id, entry, detail, 0, nil, final_key, tally_key)
      nonum = nonum + 1
    end
  end
end
return {added, seen, dup, nonum}
""".replace("READY_N", str(READY)))

# Claim up to n contacts: first move due retries to the tail of their ready list (oldest due first, at most PROMOTE
# a call), then pop from the highest priority down. KEYS: ready0-9, wait (the layout before), inflight, claims,
# wait:due, wait:0..79 wait:far. ARGV: now (campaign clock), lease expiry (wall), owner, n, then n pairs call id,
# server. Returns per claimed contact: entry, call id, server.
CLAIM = script(r"""
local w = READY_N
local wait, inflight, claims, idx = KEYS[w + 1], KEYS[w + 2], KEYS[w + 3], KEYS[w + 4]
local base = w + 4
local now = tonumber(ARGV[1])
local now_ms = now * 1000
local due = {}  -- {due ms, order, entry}
for _, item in ipairs(redis.call('ZRANGEBYSCORE', wait, '-inf', now, 'WITHSCORES', 'LIMIT', 0, PROMOTE)) do
  due[#due + 1] = item
end
local promoted = {}
for i = 1, #due, 2 do
  redis.call('ZREM', wait, due[i])
  promoted[#promoted + 1] = {tonumber(due[i + 1]) * 1000, #promoted, due[i]}
end
-- lists whose time has come, earliest first: take what is due (never an item due later), move a lap list's and the
-- far list's items a level down, keep the rest
for _, slot in ipairs(redis.call('ZRANGEBYSCORE', idx, '-inf', now_ms)) do
  local room = PROMOTE - #promoted
  if room <= 0 then break end
  slot = tonumber(slot)
  local key = KEYS[base + 1 + slot]
  local items = redis.call('LRANGE', key, 0, -1)
  local ripe, gone, due_at = {}, {}, {}
  for i, item in ipairs(items) do
    local d = wait_due(item)
    due_at[i] = d
    if d <= now_ms then ripe[#ripe + 1] = {d, i} end
  end
  table.sort(ripe, function(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]) end)
  for k = 1, math.min(room, #ripe) do
    local i = ripe[k][2]
    gone[i] = true
    local _, entry = wait_item(items[i])
    promoted[#promoted + 1] = {ripe[k][1], #promoted, entry}
  end
  if slot >= L1 then  -- a lap list a lap before its items are due, the far list 25.6 h before: a level down
    for i, item in ipairs(items) do
      local d = due_at[i]
      if not gone[i] and d > now_ms then
        local n = wait_list(d, now_ms + 2 * LAP, now_ms + 2 * FAR_LAP)
        if n ~= slot then
          gone[i] = true
          local _, entry = wait_item(item)
          wait_put(idx, base, n, d, entry)
        end
      end
    end
  end
  local keep, first, left = {}, nil, 0
  for i, item in ipairs(items) do
    if gone[i] then
      left = left + 1
    else
      keep[#keep + 1] = item
      if not first or due_at[i] < first then first = due_at[i] end
    end
  end
  if left <= 8 or left * 32 <= #items then  -- a few left (a claim each tick): remove them where they are
    for i, item in ipairs(items) do
      if gone[i] then redis.call('LREM', key, 1, item) end
    end
  else
    redis.call('DEL', key)
    push_all(key, keep)
  end
  if first then redis.call('ZADD', idx, wait_score(slot, first), slot) else redis.call('ZREM', idx, slot) end
end
table.sort(promoted, function(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]) end)
for _, p in ipairs(promoted) do
  redis.call('RPUSH', ready_key(split(p[3])), p[3])
end
local need = tonumber(ARGV[4])
local out = {}
local j = 0
for p = w, 1, -1 do
  if need <= 0 then break end
  local got = redis.call('LPOP', KEYS[p], need)
  if got then
    for _, entry in ipairs(got) do
      local id = split(entry)[1]
      local call, server = ARGV[5 + j * 2], ARGV[6 + j * 2]
      j = j + 1
      redis.call('ZADD', inflight, ARGV[2], id)
      redis.call('HSET', claims, id, cjson.encode({owner = ARGV[3], call_id = call, server = server, claimed_at = now,
                                                   lease = tonumber(ARGV[2]), entry = entry}))
      out[#out + 1] = entry
      out[#out + 1] = call
      out[#out + 1] = server
    end
    need = need - #got
  end
end
return out
""".replace("READY_N", str(READY)).replace("PROMOTE", str(PROMOTE_BATCH)))

# Settle a claim, only if it is still held with this call id. KEYS: ready0-9, wait:due, inflight, claims, final,
# tally, known, leaving, wait:0..79 wait:far.
# ARGV: id, call id, action (retry|requeue|final), count attempt (0|1), due (retry: integer ms, rounded up), final
# json (final), last json.
# Returns 1 settled, 0 not held (already settled or taken over).
SETTLE = script(r"""
local w = READY_N
local wait, inflight, claims, final_key, tally_key = KEYS[w + 1], KEYS[w + 2], KEYS[w + 3], KEYS[w + 4], KEYS[w + 5]
local id = ARGV[1]
local raw = redis.call('HGET', claims, id)
if not raw then return 0 end
local claim = cjson.decode(raw)
if claim['call_id'] ~= ARGV[2] then return 0 end
redis.call('ZREM', inflight, id)
redis.call('HDEL', claims, id)
local f = split(claim['entry'])
for k = #f + 1, 9 do f[k] = '' end
local attempts = tonumber(f[8]) or 0
if ARGV[4] == '1' then
  attempts = attempts + 1
  redis.call('HINCRBY', tally_key, 'attempts', 1)
end
f[8] = tostring(attempts)
if ARGV[7] ~= '' then f[9] = ARGV[7] end
local action = ARGV[3]
if action == 'retry' then
  wait_add(wait, w + 7, tonumber(ARGV[5]), join(f), tonumber(ARGV[8]))
elseif action == 'requeue' then
  redis.call('RPUSH', ready_key(f), join(f))
else
  local final = cjson.decode(ARGV[6])
  tally(final['at'], id, final['reason'], final['detail'], attempts, final['disposition'],
        final_for(id, final_key, KEYS[w + 6], KEYS[w + 7]), tally_key)
end
return 1
""".replace("READY_N", str(READY)))

# Extend the leases of claims this owner still holds. KEYS: inflight claims. ARGV: owner, expiry, ids...
RENEW = r"""
local n = 0
for i = 3, #ARGV do
  local raw = redis.call('HGET', KEYS[2], ARGV[i])
  if raw then
    local claim = cjson.decode(raw)
    if claim['owner'] == ARGV[1] then
      claim['lease'] = tonumber(ARGV[2])
      redis.call('HSET', KEYS[2], ARGV[i], cjson.encode(claim))
      redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[i])
      n = n + 1
    end
  end
end
return n
"""

# Take over claims whose lease expired (their process died or stalled). KEYS: inflight claims.
# ARGV: now (wall), new owner, new expiry, limit. Returns per claim: id, old claim json.
TAKEOVER = r"""
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[4]))
local out = {}
for _, id in ipairs(ids) do
  local raw = redis.call('HGET', KEYS[2], id)
  if raw then
    local claim = cjson.decode(raw)
    claim['previous_owner'] = claim['owner']
    claim['owner'] = ARGV[2]
    claim['lease'] = tonumber(ARGV[3])
    redis.call('HSET', KEYS[2], id, cjson.encode(claim))
    redis.call('ZADD', KEYS[1], ARGV[3], id)
    out[#out + 1] = id
    out[#out + 1] = raw
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
"""

# Find a contact (ARGV[1] = id) or a number (ARGV[2] = E.164) in the queue, read only. KEYS: ready0-9, wait, claims,
# final, phones, leaving, wait:0..79 wait:far. Linear in the window (a subject request or a "why" question, not the
# dialing path).
# Returns per match: id, state (ready|wait|inflight|final), entry ("" for final), due ("" unless wait), final json.
FIND = script(r"""
local w = READY_N
local wait, claims, final_key, phones = KEYS[w + 1], KEYS[w + 2], KEYS[w + 3], KEYS[w + 4]
local want_id, want_e = ARGV[1], ARGV[2]
local out, seen = {}, {}
local function hit(f) return (want_id ~= '' and f[1] == want_id) or (want_e ~= '' and f[2] == want_e) end
local function add(id, state, entry, due, final)
  if seen[id] then return end
  seen[id] = true
  out[#out + 1] = id; out[#out + 1] = state; out[#out + 1] = entry; out[#out + 1] = due; out[#out + 1] = final
end
local flat = redis.call('HGETALL', claims)
for i = 1, #flat, 2 do
  local entry = cjson.decode(flat[i + 1])['entry']
  if hit(split(entry)) then add(flat[i], 'inflight', entry, '', '') end
end
for p = 1, w do
  for _, entry in ipairs(redis.call('LRANGE', KEYS[p], 0, -1)) do
    local f = split(entry)
    if hit(f) then add(f[1], 'ready', entry, '', '') end
  end
end
local waiting = redis.call('ZRANGE', wait, 0, -1, 'WITHSCORES')
for i = 1, #waiting, 2 do
  local f = split(waiting[i])
  if hit(f) then add(f[1], 'wait', waiting[i], waiting[i + 1], '') end
end
for _, item in ipairs(wait_all(w + 5)) do
  if hit(split(item[3])) then add(split(item[3])[1], 'wait', item[3], string.format('%.3f', item[2] / 1000), '') end
end
local ids = {}
if want_id ~= '' then ids[#ids + 1] = want_id end
if want_e ~= '' then
  local legacy = redis.call('HGET', phones, want_e)
  if legacy then ids[#ids + 1] = legacy end
end
for _, id in ipairs(ids) do
  local final = redis.call('HGET', final_key, id) or redis.call('HGET', KEYS[w + 5], id)
  if final then add(id, 'final', '', '', final) end
end
return out
""".replace("READY_N", str(READY)))

# Erase a number from the queue (data subject erasure, dialer/privacy.py). KEYS: ready0-9, wait, claims, final,
# tally, phones, known, leaving, wait:due, wait:0..79 wait:far. Linear in the window (the wheel keeps no number -> place
# index: it would cost more than the entry). ARGV: e164, at (campaign clock seconds). Contacts waiting to be called
# leave as final (reason "erased"): their entries, the only place the queue holds the number, go. A contact in
# flight keeps its entry (the call under way settles with it; the gate denies any new reservation): returns 2 so
# the eraser runs again.
# Returns 0 (number not in this queue), 1 (erased) or 2 (in flight).
ERASE = script(r"""
local w = READY_N
local wait, claims, final_key, tally_key, phones = KEYS[w + 1], KEYS[w + 2], KEYS[w + 3], KEYS[w + 4], KEYS[w + 5]
local e, at = ARGV[1], tonumber(ARGV[2])
local flat = redis.call('HGETALL', claims)
for i = 1, #flat, 2 do
  if split(cjson.decode(flat[i + 1])['entry'])[2] == e then return 2 end
end
local found = redis.call('HDEL', phones, e)
local function erased(f)
  tally(at, f[1], 'erased', '', tonumber(f[8]) or 0, nil, final_for(f[1], final_key, KEYS[w + 6], KEYS[w + 7]),
        tally_key)
  found = 1
end
for p = 1, w do
  for _, entry in ipairs(redis.call('LRANGE', KEYS[p], 0, -1)) do
    local f = split(entry)
    if f[2] == e then
      redis.call('LREM', KEYS[p], 0, entry)
      erased(f)
    end
  end
end
for _, entry in ipairs(redis.call('ZRANGE', wait, 0, -1)) do
  local f = split(entry)
  if f[2] == e then
    redis.call('ZREM', wait, entry)
    erased(f)
  end
end
local touched = {}
for _, item in ipairs(wait_all(w + 8)) do
  local f = split(item[3])
  if f[2] == e then
    redis.call('LREM', KEYS[w + 8 + 1 + item[1]], 0, item[4])
    touched[item[1]] = true
    erased(f)
  end
end
for slot = 0, FAR do
  if touched[slot] then wait_reindex(KEYS[w + 8], w + 8, slot) end
end
return found
""".replace("READY_N", str(READY)))

# The window's generation and cursor, and every contact id the queue holds (ready, waiting, in flight, final not yet
# moved to the record), read in one step: a refill skips them. KEYS: ready0-9, wait, claims, final, window, leaving,
# wait:0..79 wait:far.
HELD = script(r"""
local w = READY_N
local out = {redis.call('HGET', KEYS[w + 4], 'gen') or '0', redis.call('HGET', KEYS[w + 4], 'after') or ''}
for p = 1, w do
  for _, entry in ipairs(redis.call('LRANGE', KEYS[p], 0, -1)) do out[#out + 1] = split(entry)[1] end
end
for _, entry in ipairs(redis.call('ZRANGE', KEYS[w + 1], 0, -1)) do out[#out + 1] = split(entry)[1] end
for _, id in ipairs(redis.call('HKEYS', KEYS[w + 2])) do out[#out + 1] = id end
for _, id in ipairs(redis.call('HKEYS', KEYS[w + 3])) do out[#out + 1] = id end
for _, id in ipairs(redis.call('HKEYS', KEYS[w + 5])) do out[#out + 1] = id end
for _, item in ipairs(wait_all(w + 5)) do out[#out + 1] = split(item[3])[1] end
return out
""".replace("READY_N", str(READY)))

# Final contacts stored in the record leave Redis; the window's generation moves (a page read before this step is
# stale: it may hold one of them). KEYS: leaving, window. ARGV: ids.
DROP_FINALS = r"""
local n = 0
for i = 1, #ARGV do n = n + redis.call('HDEL', KEYS[1], ARGV[i]) end
redis.call('HINCRBY', KEYS[2], 'gen', 1)
return n
"""

# Convert a queue of the layout before issue 18's compact one (hashes `state`, `data`, `attempts`, `last` and a
# `ready` sorted set; `wait` members were contact ids) in one step, so an upgrade mid-campaign neither forgets a
# contact nor queues a finished one again. KEYS: ready0-9, wait, claims, final, tally, known, then the old state,
# data, attempts, last and ready. Returns the number of contacts converted (0: nothing of the old layout).
UPGRADE = script(r"""
local w = READY_N
local wait, claims, final_key, tally_key, known = KEYS[w + 1], KEYS[w + 2], KEYS[w + 3], KEYS[w + 4], KEYS[w + 5]
local o_state, o_data, o_attempts, o_last, o_ready = KEYS[w + 6], KEYS[w + 7], KEYS[w + 8], KEYS[w + 9], KEYS[w + 10]
if redis.call('EXISTS', o_state) == 0 then return 0 end
local function str(v)
  if v == nil or v == cjson.null then return '' end
  local clean = string.gsub(tostring(v), SEP, '')
  return clean
end
local function entry(id)
  local raw = redis.call('HGET', o_data, id)
  if not raw then return nil end
  local d = cjson.decode(raw)
  local zones = {}
  if type(d['zones']) == 'table' then for _, z in ipairs(d['zones']) do zones[#zones + 1] = str(z) end end
  local last = ''
  local l = redis.call('HGET', o_last, id)
  if l then
    local s = cjson.decode(l)
    if s['step'] ~= 'final' then last = cjson.encode({str(s['step']), str(s['reason']), tonumber(s['at']) or 0}) end
  end
  return join({id, str(d['phone']), str(d['country']), str(d['postal_code']), str(d['state']), table.concat(zones, ','),
               tostring(tonumber(d['priority']) or 0), redis.call('HGET', o_attempts, id) or '0', last})
end
for _, id in ipairs(redis.call('ZRANGE', o_ready, 0, -1)) do
  local e = entry(id)
  if e then redis.call('RPUSH', ready_key(split(e)), e) end
end
local waiting = redis.call('ZRANGE', wait, 0, -1, 'WITHSCORES')
redis.call('DEL', wait)
for i = 1, #waiting, 2 do
  local e = entry(waiting[i])
  if e then redis.call('ZADD', wait, waiting[i + 1], e) end
end
local flat = redis.call('HGETALL', claims)
for i = 1, #flat, 2 do
  local claim = cjson.decode(flat[i + 1])
  if not claim['entry'] then
    claim['entry'] = entry(flat[i]) or join({flat[i], '', '', '', '', '', '0', '0', ''})
    redis.call('HSET', claims, flat[i], cjson.encode(claim))
  end
end
local n = 0
for _, id in ipairs(redis.call('HKEYS', o_state)) do
  redis.call('SADD', known, id)
  n = n + 1
end
redis.call('HINCRBY', tally_key, 'taken', n)
for _, raw in ipairs(redis.call('HVALS', final_key)) do
  local f = cjson.decode(raw)
  redis.call('HINCRBY', tally_key, 'final', 1)
  redis.call('HINCRBY', tally_key, 'r:' .. str(f['reason']), 1)
  if f['reason'] == 'gate_denied' then redis.call('HINCRBY', tally_key, 'd:' .. str(f['detail']), 1) end
end
local calls = 0
for _, a in ipairs(redis.call('HVALS', o_attempts)) do calls = calls + (tonumber(a) or 0) end
redis.call('HINCRBY', tally_key, 'attempts', calls)
redis.call('DEL', o_state, o_data, o_attempts, o_last, o_ready)
return n
""".replace("READY_N", str(READY)))

# Move the sorted set `wait` of the layout before the wheel (entry -> due seconds) into the wheel, in one step (its
# due times rounded up to the ms: never earlier). KEYS: wait, wait:due, wait:0..79 wait:far. Returns the contacts moved.
MIGRATE_WAIT = script(r"""
local waiting = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #waiting, 2 do
  local ms = math.ceil(math.floor(tonumber(waiting[i + 1]) * 1e6 + 0.5) / 1000)
  wait_put(KEYS[2], 2, FAR, ms, waiting[i])  -- the far list: the next claim moves what is near a level down
end
redis.call('DEL', KEYS[1])
return #waiting / 2
""")

# The queue's figures in one step. KEYS: ready0-9, wait, inflight, tally, wait:due, wait:0..79 wait:far. ARGV: now
# (campaign clock) or "" (due not counted). Returns ready, waiting, due, inflight, final.
COUNTS = script(r"""
local w = READY_N
local wait, inflight, tally_key, idx = KEYS[w + 1], KEYS[w + 2], KEYS[w + 3], KEYS[w + 4]
local ready, waiting, due = 0, redis.call('ZCARD', wait), 0
for p = 1, w do ready = ready + redis.call('LLEN', KEYS[p]) end
for slot = 0, FAR do waiting = waiting + redis.call('LLEN', KEYS[w + 5 + slot]) end
if ARGV[1] ~= '' then
  local now = tonumber(ARGV[1])
  due = redis.call('ZCOUNT', wait, '-inf', now)
  for _, slot in ipairs(redis.call('ZRANGEBYSCORE', idx, '-inf', now * 1000)) do
    for _, item in ipairs(redis.call('LRANGE', KEYS[w + 5 + tonumber(slot)], 0, -1)) do
      if wait_due(item) <= now * 1000 then due = due + 1 end
    end
  end
end
return {ready, waiting, due, redis.call('ZCARD', inflight), tonumber(redis.call('HGET', tally_key, 'final') or '0')}
""".replace("READY_N", str(READY)))
