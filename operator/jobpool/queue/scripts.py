"""The Lua scripts of the Redis Streams queue: each one is a step that must be atomic.

Stream entries have the fields id, p (payload JSON), a (attempts already used),
t (enqueued or due, unix ms) and r ("1" once the job was replayed from the dead letters,
so a second dead-lettering is not counted twice). All keys share the pool's hash tag and
every key a script touches is one of its KEYS (Redis Cluster routes and checks by them), so
the result keys of jobs come from the caller.
"""
from .keys import RELEASED_CONSUMER

# Creates the group, with the stream or on a stream a producer wrote before the first worker
# (its entries are then delivered from the start); BUSYGROUP means it exists already.
_ENSURE_GROUP = f"""
local RELEASED_CONSUMER = '{RELEASED_CONSUMER}'
""" + """
local function ensure_group(stream, group)
  pcall(redis.call, 'XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- pending entries held by real consumers; entries given back on drain count as waiting
local function in_flight_count(stream, group)
  local ok, summary = pcall(redis.call, 'XPENDING', stream, group)
  if not ok then return 0 end
  local pending = summary[1]
  if summary[4] then
    for _, consumer in ipairs(summary[4]) do
      if consumer[1] == RELEASED_CONSUMER then pending = pending - tonumber(consumer[2]) end
    end
  end
  return pending
end
local function waiting_count(stream, group)
  return redis.call('XLEN', stream) - in_flight_count(stream, group)
end
"""

# Whether `consumer` still holds the delivery of `entry`: a worker that stalled past the
# visibility timeout has lost it to the worker that reclaimed it, and one that finished it
# (or released it) holds it no more.
_HOLDS = """
local function holds(stream, group, entry, consumer)
  local ok, info = pcall(redis.call, 'XPENDING', stream, group, entry, entry, 1, consumer)
  return ok and info[1] ~= nil
end
"""

# Jobs travel as one NUL-separated blob (ids are printable and JSON escapes control
# characters, so NUL never occurs inside a field): packing thousands of separate arguments
# costs the client more than the script costs Redis.
_SPLIT = """
local function split_blob(blob, width)
  local rows, row, pos = {}, {}, 1
  local size = #blob
  while pos <= size + 1 do
    local stop = string.find(blob, '\\0', pos, true) or (size + 1)
    row[#row + 1] = string.sub(blob, pos, stop - 1)
    if #row == width then
      rows[#rows + 1] = row
      row = {}
    end
    pos = stop + 1
  end
  return rows
end
"""

# INFO is allowed in scripts (effects are replicated, not the script); maxmemory 0 = no limit.
# INFO costs more than the rest of a one-job submit, so each pool reads it at most every
# MEMORY_SAMPLE_MS into its memory hash (sample = used:maxmemory:time) and adds an estimate
# of what it submitted since (added: the blob x 1.25 + 200 bytes a job, more than a waiting
# job takes). The estimate only decides far from the limit (MEMORY_MARGIN of maxmemory
# below it); nearer, every submit reads INFO.
# Tenants run no INFO: on a queue the operator administers it publishes the sample
# (publisher = operator, added reset), and submits go by it and what they added since.
_MEMORY = """
local MEMORY_SAMPLE_MS, MEMORY_MARGIN = 100, 0.05
local function memory_used_and_max()
  local ok, info = pcall(redis.call, 'INFO', 'memory')
  if not ok then return nil, nil end
  return tonumber(string.match(info, 'used_memory:(%d+)')),
    tonumber(string.match(info, 'maxmemory:(%d+)'))
end
-- (used memory, maxmemory, whether it is a fresh sample to store) for a submit of `size` bytes
local function sampled_memory(sample, added, now, size, share, published)
  local used, max_memory, at = string.match(sample or '', '^(%d+):(%d+):(%d+)$')
  if at then
    used, max_memory = tonumber(used) + (tonumber(added) or 0), tonumber(max_memory)
    if published or (now - tonumber(at) < MEMORY_SAMPLE_MS
                     and (max_memory == 0 or used + size <= max_memory * (share - MEMORY_MARGIN))) then
      return used, max_memory, false
    end
  end
  local fresh_used, fresh_max = memory_used_and_max()
  if fresh_used == nil then   -- a user without INFO before the operator's first sample: the last one
    if at then return used, max_memory, false end
    return 0, 0, false
  end
  return fresh_used, fresh_max, true
end
local function record_memory(memory, used, max_memory, now, fresh, added)
  if fresh then
    redis.call('HSET', memory, 'sample', used .. ':' .. max_memory .. ':' .. now, 'added', added)
  else
    redis.call('HINCRBY', memory, 'added', added)
  end
end
"""

# KEYS: stream live dead_ids config counters memory, then the result key of each caller-given
#       id in the order of the blob (generated ids are new: they have none)
# ARGV: group partial(1|0) blob of (id, given(1|0), payload) default_max_payload_bytes
#       memory_share (submits stop when used memory would pass this share of maxmemory)
# -> {processed, enqueued, room}; processed < number of jobs means the queue is full.
# Nothing is enqueued when a payload is too large: {0, 0, room, 'payload', index, size, limit},
# or when Redis memory is nearly full: {0, 0, room, 'memory', used, maxmemory}.
SUBMIT = _ENSURE_GROUP + _SPLIT + _MEMORY + """
local stream, live, dead_ids, config, counters, memory =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local group, partial = ARGV[1], ARGV[2] == '1'
local jobs = split_blob(ARGV[3], 3)
local n = #jobs
local result_keys, given_count = {}, 0
for i = 1, n do
  if jobs[i][2] == '1' then
    given_count = given_count + 1
    result_keys[i] = KEYS[6 + given_count]
  end
end
local settings = redis.call('HMGET', config, 'max_payload_bytes', 'max_length')
local max_payload = tonumber(settings[1] or '') or tonumber(ARGV[4])
for i = 1, n do
  local size = #jobs[i][3]
  if size > max_payload then return {0, 0, -1, 'payload', i - 1, size, max_payload} end
end
-- refused well before Redis itself refuses writes, so workers can still store results
local now = now_ms()
local share = tonumber(ARGV[5])
local sample = redis.call('HMGET', memory, 'sample', 'added', 'publisher')
local used, max_memory, fresh = sampled_memory(sample[1], sample[2], now, #ARGV[3], share,
                                               sample[3] == 'operator')
if max_memory > 0 and used + #ARGV[3] > max_memory * share then
  return {0, 0, -1, 'memory', used, max_memory}
end
local function known(i)
  local id = jobs[i][1]
  return redis.call('SISMEMBER', live, id) == 1 or redis.call('EXISTS', result_keys[i]) == 1
    or redis.call('HEXISTS', dead_ids, id) == 1
end
local max_length = tonumber(settings[2] or '0') or 0
local room = -1
if max_length > 0 then
  room = max_length - waiting_count(stream, group)
  if room < 0 then room = 0 end
  if not partial then
    local new = 0
    for i = 1, n do
      if jobs[i][2] == '0' or not known(i) then new = new + 1 end
    end
    if new > room then return {0, 0, room} end
  end
end
if redis.call('EXISTS', stream) == 0 then ensure_group(stream, group) end
local stamp = tostring(now)
local processed, enqueued = 0, 0
for i = 1, n do
  local id, given, payload = jobs[i][1], jobs[i][2], jobs[i][3]
  if given == '1' and known(i) then
    processed = processed + 1
  else
    if room == 0 then break end
    redis.call('SADD', live, id)
    redis.call('XADD', stream, '*', 'id', id, 'p', payload, 'a', '0', 't', stamp, 'r', '0')
    processed = processed + 1
    enqueued = enqueued + 1
    if room > 0 then room = room - 1 end
  end
end
if enqueued > 0 then redis.call('HINCRBY', counters, 'submitted', enqueued) end
if fresh or (max_memory > 0 and enqueued > 0) then
  record_memory(memory, used, max_memory, now, fresh, math.floor(#ARGV[3] * 1.25) + 200 * enqueued)
end
return {processed, enqueued, room}
"""

# KEYS: stream delayed delayed_jobs reclaim_gate reclaim_cursor
# ARGV: group consumer count visibility_ms reclaim_interval_ms
# -> {now, next_due, reclaimed, fresh}; reclaimed = {{entry_id, fields, deliveries}...}
_FETCH_BODY = """
local stream, delayed, delayed_jobs, gate, cursor_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local group, consumer = ARGV[1], ARGV[2]
local count, visibility, interval = tonumber(ARGV[3]), ARGV[4], ARGV[5]
ensure_group(stream, group)
local now = now_ms()
-- due retries become waiting entries again; this is why no worker polls for them
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, 1000)
for _, id in ipairs(due) do
  local packed = redis.call('HGET', delayed_jobs, id)
  if packed then
    local attempts, replayed, payload = string.match(packed, '^(%d+):(%d):(.*)$')
    redis.call('XADD', stream, '*', 'id', id, 'p', payload, 'a', attempts, 't', tostring(now),
               'r', replayed)
  end
  redis.call('ZREM', delayed, id)
  redis.call('HDEL', delayed_jobs, id)
end
local reclaimed = {}
-- jobs given back by a draining worker go first, to whoever asks next
local released = redis.call('XPENDING', stream, group, '-', '+', count, RELEASED_CONSUMER)
if released[1] then
  local ids, deliveries = {}, {}
  for _, info in ipairs(released) do
    ids[#ids + 1] = info[1]
    deliveries[info[1]] = info[4] + 1
  end
  for _, entry in ipairs(redis.call('XCLAIM', stream, group, consumer, 0, unpack(ids))) do
    if entry[2] then table.insert(reclaimed, {entry[1], entry[2], deliveries[entry[1]]}) end
  end
end
-- every fetch may reclaim stale entries into its free slots, so redelivery after a mass
-- worker death scales with the free slots of all fetching workers; the gate only rests the
-- scan for an interval after a full pass over the pending entries found nothing stale
if count > #reclaimed and redis.call('EXISTS', gate) == 0 then
  local cursor = redis.call('GET', cursor_key) or '0-0'
  local res = redis.call('XAUTOCLAIM', stream, group, consumer, visibility, cursor, 'COUNT',
                         count - #reclaimed)
  redis.call('SET', cursor_key, res[1])
  for _, entry in ipairs(res[2]) do
    local info = redis.call('XPENDING', stream, group, entry[1], entry[1], 1)
    local deliveries = 1
    if info[1] then deliveries = info[1][4] end
    table.insert(reclaimed, {entry[1], entry[2], deliveries})
  end
  if res[1] == '0-0' and #res[2] == 0 then
    redis.call('SET', gate, '1', 'PX', interval)
    -- consumers of workers that are gone and hold nothing would pile up in the group
    for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', stream, group)) do
      local info = {}
      for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
      if info['pending'] == 0 and info['idle'] > tonumber(visibility) * 10
          and info['name'] ~= consumer then
        redis.call('XGROUP', 'DELCONSUMER', stream, group, info['name'])
      end
    end
  end
end
local fresh = {}
local remaining = count - #reclaimed
if remaining > 0 then
  local res = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', remaining,
                         'STREAMS', stream, '>')
  if res then fresh = res[1][2] end
end
local next_due = -1
local first = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
if first[2] then next_due = tonumber(first[2]) end
return {now, next_due, reclaimed, fresh}
"""

# KEYS: stream live counters results, then the result key of each job in the blob's order
# ARGV: group result_ttl_ms results_cap blob of (entry_id, consumer, id, attempts, result)
# -> {succeeded, duplicates, excess}; excess results over the cap are for TRIM_RESULTS to
# remove (their keys come from the caller). succeeded includes completions this same ack already recorded
# (sent again after its reply was lost), which the counters do not count twice.
# Only the worker that holds the delivery completes the job. The late ack of a worker that
# lost it (its job was reclaimed while it stalled) is a duplicate: nothing is stored or
# removed, and the job finishes with the result of the worker that holds it now.
_ACK_BODY = """
local stream, live, counters, results = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, ttl, cap = ARGV[1], ARGV[2], ARGV[3]
local succeeded, resent, duplicates = 0, 0, 0
local held, entries, ids = {}, {}, {}
for i, done in ipairs(split_blob(ARGV[4], 5)) do
  local entry, consumer, id, attempts, result = done[1], done[2], done[3], done[4], done[5]
  local result_key = KEYS[4 + i]
  if holds(stream, group, entry, consumer) then
    held[#held + 1] = {done, result_key}
    entries[#entries + 1] = entry
    ids[#ids + 1] = id
  elseif redis.call('GET', result_key) == attempts .. ':' .. result then
    resent = resent + 1     -- every delivery has its own attempt number
  else
    duplicates = duplicates + 1
  end
end
-- XACK first: a script's first write must not be one Redis refuses past its maxmemory (then
-- the rest may write), so acks go on and free memory; one call each for the whole batch
if #entries > 0 then
  redis.call('XACK', stream, group, unpack(entries))
  redis.call('XDEL', stream, unpack(entries))
  redis.call('SREM', live, unpack(ids))
end
for _, job in ipairs(held) do
  local done, result_key = job[1], job[2]
  local id, attempts, result = done[3], done[4], done[5]
  -- the result key is the proof of a first completion: an id that already has one was
  -- written twice (by a foreign producer), so this completion is a duplicate
  if redis.call('SET', result_key, attempts .. ':' .. result, 'PX', ttl, 'NX') then
    redis.call('XADD', results, '*', 'id', id, 'r', result, 'a', attempts)
    succeeded = succeeded + 1
  else
    duplicates = duplicates + 1
  end
end
if succeeded > 0 then redis.call('HINCRBY', counters, 'succeeded', succeeded) end
if duplicates > 0 then redis.call('HINCRBY', counters, 'duplicates', duplicates) end
return {succeeded + resent, duplicates, math.max(0, redis.call('XLEN', results) - tonumber(cap))}
"""

FETCH = _ENSURE_GROUP + _FETCH_BODY
ACK = _SPLIT + _HOLDS + _ACK_BODY

# KEYS: results, then the result key of each entry
# ARGV: the oldest entry ids of the results stream (read by the caller) -> number removed
# At most `cap` results are kept: the oldest go with their result keys. An entry another
# caller removed first is skipped, and with it its key, which may hold a newer result by now.
TRIM_RESULTS = """
local n = 0
for i = 1, #ARGV do
  if redis.call('XDEL', KEYS[1], ARGV[i]) == 1 then
    redis.call('DEL', KEYS[1 + i])
    n = n + 1
  end
end
return n
"""

# A worker's ack and its next fetch in one call (a round trip less per batch), for the slots
# the ack frees: the fetch runs only once the ack is done, so the worker never holds more.
# KEYS: stream live counters results delayed delayed_jobs reclaim_gate reclaim_cursor, then
#       the result key of each job in the blob's order (as ACK takes them)
# ARGV: the ACK's (group result_ttl_ms results_cap blob), then consumer count visibility_ms
#       reclaim_interval_ms
# -> {ACK's reply, FETCH's reply}; the ACK's excess is for TRIM_RESULTS as after ACK
ACK_THEN_FETCH = _SPLIT + _HOLDS + _ENSURE_GROUP + """
local function ack(KEYS, ARGV)
""" + _ACK_BODY + """
end
local function fetch(KEYS, ARGV)
""" + _FETCH_BODY + """
end
local ack_keys = {KEYS[1], KEYS[2], KEYS[3], KEYS[4]}
for i = 9, #KEYS do ack_keys[#ack_keys + 1] = KEYS[i] end
local acked = ack(ack_keys, {ARGV[1], ARGV[2], ARGV[3], ARGV[4]})
return {acked, fetch({KEYS[1], KEYS[5], KEYS[6], KEYS[7], KEYS[8]},
                     {ARGV[1], ARGV[5], ARGV[6], ARGV[7], ARGV[8]})}
"""

# KEYS: stream live delayed delayed_jobs dead dead_ids counters result (the job's result key)
# ARGV: group entry_id consumer id attempts payload error outcome(retried|dead_lettered)
#       delay_ms replayed dead_letter_cap
# -> the outcome, or "duplicate" when the worker no longer holds the delivery: another worker
# reclaimed the job (and runs it) or finished it, so a late failure neither schedules another
# copy nor dead-letters a job that may succeed; it is counted as a duplicate.
FAIL = _ENSURE_GROUP + _HOLDS + """
local stream, live, delayed, delayed_jobs, dead, dead_ids, counters, result_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local group, entry, consumer, id, attempts, payload, err, outcome, delay, replayed =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], tonumber(ARGV[9]),
  ARGV[10]
if not holds(stream, group, entry, consumer) then
  -- this same failure sent again after its reply was lost: already recorded, not counted again
  local waiting = redis.call('HGET', delayed_jobs, id)
  if outcome == 'retried' and waiting and string.sub(waiting, 1, #attempts + 1) == attempts .. ':' then
    return 'retried'
  end
  local dead_entry = redis.call('HGET', dead_ids, id)
  if outcome == 'dead_lettered' and dead_entry then
    local found = redis.call('XRANGE', dead, dead_entry, dead_entry)
    if found[1] then
      local f = found[1][2]
      for i = 1, #f, 2 do
        if f[i] == 'a' and f[i + 1] == attempts then return 'dead_lettered' end
      end
    end
  end
  redis.call('HINCRBY', counters, 'duplicates', 1)
  return 'duplicate'
end
redis.call('XACK', stream, group, entry)
redis.call('XDEL', stream, entry)
if redis.call('EXISTS', result_key) == 1 then
  redis.call('HINCRBY', counters, 'duplicates', 1)
  return 'duplicate'
end
local now = now_ms()
if outcome == 'retried' then
  redis.call('ZADD', delayed, now + delay, id)
  redis.call('HSET', delayed_jobs, id, attempts .. ':' .. replayed .. ':' .. payload)
  redis.call('HINCRBY', counters, 'retried', 1)
  return 'retried'
end
local dead_entry = redis.call('XADD', dead, '*', 'id', id, 'p', payload, 'a', attempts,
                              'e', err, 't', tostring(now))
local previous = redis.call('HGET', dead_ids, id)
if previous then redis.call('XDEL', dead, previous) end
redis.call('HSET', dead_ids, id, dead_entry)
redis.call('SREM', live, id)
if replayed ~= '1' then redis.call('HINCRBY', counters, 'dead_lettered', 1) end
-- at most `dead_letter_cap` dead letters are kept: the oldest go first
local excess = redis.call('XLEN', dead) - tonumber(ARGV[11])
if excess > 0 then
  for _, old in ipairs(redis.call('XRANGE', dead, '-', '+', 'COUNT', math.min(excess, 1000))) do
    if redis.call('HGET', dead_ids, old[2][2]) == old[1] then redis.call('HDEL', dead_ids, old[2][2]) end
    redis.call('XDEL', dead, old[1])
  end
end
return 'dead_lettered'
"""

# KEYS: stream reclaim_gate reclaim_cursor
# ARGV: group released_consumer consumer entry ids... -> number released
# Entries move to a consumer nobody reads from, look idle forever and keep their delivery
# count, so the next fetch of any worker reclaims them at once without counting an attempt.
# Only entries `consumer` still owns move: one another worker reclaimed stays with it.
RELEASE = """
local stream, gate, cursor_key = KEYS[1], KEYS[2], KEYS[3]
local group, released, consumer = ARGV[1], ARGV[2], ARGV[3]
local n = 0
for i = 4, #ARGV do
  local ok, info = pcall(redis.call, 'XPENDING', stream, group, ARGV[i], ARGV[i], 1, consumer)
  if ok and info[1] then
    redis.call('XCLAIM', stream, group, released, 0, ARGV[i], 'IDLE', 1000000000000,
               'RETRYCOUNT', math.max(info[1][4] - 1, 0), 'JUSTID')
    n = n + 1
  end
end
redis.call('DEL', gate)
redis.call('SET', cursor_key, '0-0')
return n
"""

# KEYS: stream workers
# ARGV: group consumer info_json entry ids...
# XCLAIM with the same consumer and JUSTID resets the idle time of running jobs, so the
# visibility timeout never takes them from a live worker.
HEARTBEAT = _HOLDS + """
local stream, workers = KEYS[1], KEYS[2]
local group, consumer, info = ARGV[1], ARGV[2], ARGV[3]
redis.call('HSET', workers, consumer, info)
if #ARGV >= 4 and redis.call('EXISTS', stream) == 1 then
  -- Only entries this consumer still owns: a job another worker reclaimed stays theirs.
  local ids = {}
  for i = 4, #ARGV do
    if holds(stream, group, ARGV[i], consumer) then ids[#ids + 1] = ARGV[i] end
  end
  -- JUSTID resets the idle time without counting another delivery (attempts stay true).
  if #ids > 0 then
    ids[#ids + 1] = 'JUSTID'
    pcall(redis.call, 'XCLAIM', stream, group, consumer, 0, unpack(ids))
  end
end
return 1
"""

# KEYS: stream workers
# ARGV: group consumer
UNREGISTER = """
local stream, workers = KEYS[1], KEYS[2]
local group, consumer = ARGV[1], ARGV[2]
redis.call('HDEL', workers, consumer)
local ok, pending = pcall(redis.call, 'XPENDING', stream, group, '-', '+', 1, consumer)
if ok and not pending[1] then
  pcall(redis.call, 'XGROUP', 'DELCONSUMER', stream, group, consumer)
end
return 1
"""

# KEYS: stream delayed dead counters workers
# ARGV: group now_ms
# -> {xlen, in_flight, delayed, dead, counters(flat), workers(flat, live ones), held(flat: consumer, count)}
# `held` is what each consumer has not acknowledged, read with in_flight at the same instant: the
# workers' busy slots (their own published counts lag behind a burst by up to a publish interval).
STATS = _ENSURE_GROUP + """
local stream, delayed, dead, counters, workers = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local group, now = ARGV[1], tonumber(ARGV[2])
local pending = in_flight_count(stream, group)
local held = {}
local ok, summary = pcall(redis.call, 'XPENDING', stream, group)
if ok and summary[4] then
  for _, consumer in ipairs(summary[4]) do
    held[#held + 1] = consumer[1]
    held[#held + 1] = consumer[2]
  end
end
local live = {}
local all = redis.call('HGETALL', workers)
for i = 1, #all, 2 do
  local expires = tonumber(string.match(all[i + 1], '"expiresAt":%s*([%d%.]+)') or '0')
  if expires * 1000 < now then
    redis.call('HDEL', workers, all[i])
  else
    live[#live + 1] = all[i]
    live[#live + 1] = all[i + 1]
  end
end
return {redis.call('XLEN', stream), pending, redis.call('ZCARD', delayed),
        redis.call('XLEN', dead), redis.call('HGETALL', counters), live, held}
"""

# KEYS: stream live dead dead_ids
# ARGV: group all(1|0) ids... -> number replayed
REPLAY = _ENSURE_GROUP + """
local stream, live, dead, dead_ids = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group = ARGV[1]
local entries = {}
if ARGV[2] == '1' then
  local all = redis.call('HGETALL', dead_ids)
  for i = 2, #all, 2 do entries[#entries + 1] = all[i] end
else
  for i = 3, #ARGV do
    local e = redis.call('HGET', dead_ids, ARGV[i])
    if e then entries[#entries + 1] = e end
  end
end
ensure_group(stream, group)
local now = tostring(now_ms())
local n = 0
for _, e in ipairs(entries) do
  local found = redis.call('XRANGE', dead, e, e)
  if found[1] then
    local f = found[1][2]
    local fields = {}
    for i = 1, #f, 2 do fields[f[i]] = f[i + 1] end
    redis.call('SADD', live, fields['id'])
    redis.call('XADD', stream, '*', 'id', fields['id'], 'p', fields['p'], 'a', '0', 't', now,
               'r', '1')
    redis.call('XDEL', dead, e)
    redis.call('HDEL', dead_ids, fields['id'])
    n = n + 1
  end
end
return n
"""

# KEYS: dead dead_ids
# ARGV: all(1|0) ids... -> number purged
PURGE = """
local dead, dead_ids = KEYS[1], KEYS[2]
if ARGV[1] == '1' then
  local n = redis.call('XLEN', dead)
  redis.call('DEL', dead, dead_ids)
  return n
end
local n = 0
for i = 2, #ARGV do
  local e = redis.call('HGET', dead_ids, ARGV[i])
  if e then
    n = n + redis.call('XDEL', dead, e)
    redis.call('HDEL', dead_ids, ARGV[i])
  end
end
return n
"""
