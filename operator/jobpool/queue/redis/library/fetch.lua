-- fetch: promote due retries and scheduled jobs, reclaim released and stale entries, then fill
-- the free slots of `consumer` (`count`) with waiting jobs: levels 9 to 1 first, each
-- round-robin over its fairness keys, then level 0 round-robin over its keys and the stream's
-- own jobs (those without a priority or a key: the only ones when nothing waits outside).
-- -> {now, next_due, reclaimed, fresh}; reclaimed = {{entry_id, fields, deliveries}...}
--
-- A job from outside the stream is delivered as a stream entry. When the group has read every
-- entry, XADD then XREADGROUP delivers it. Otherwise a read would deliver the unread entries
-- first, and an entry claimed into the pending list (XCLAIM FORCE) would be delivered again by
-- the next read that reaches it (Redis hands a pending entry to that reader). So it is written
-- marked express, claimed for `consumer`, and the `express` hash names its holder: every read
-- of the library gives an express entry back to its holder (and skips it), a worker's blocking
-- read skips it (entries.py), `holds` goes by the hash, and ack, fail and cancel remove the mark.
-- A read that met it has set its delivery count to 1: a later reclaim counts attempts from there.

-- Whether the group has read every entry of the stream (none past its last-delivered id).
local function all_read(stream)
  local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)[1]
  if not last then return true end
  for _, group in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local info = {}
    for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
    if info['name'] == GROUP then
      local ms, seq = string.match(last[1], '^(%d+)-(%d+)$')
      local read_ms, read_seq = string.match(info['last-delivered-id'], '^(%d+)-(%d+)$')
      ms, read_ms = tonumber(ms), tonumber(read_ms)
      return ms < read_ms or (ms == read_ms and tonumber(seq) <= tonumber(read_seq))
    end
  end
  return false
end

-- Reads up to `n` unread entries of the stream into `fresh` for `consumer`; an express entry the
-- read meets goes back to its holder. -> how many it added
local function read_stream(k, state, consumer, n, fresh)
  local taken = 0
  while taken < n do
    local asked = n - taken
    local res = redis.call('XREADGROUP', 'GROUP', GROUP, consumer, 'COUNT', asked, 'STREAMS', k.stream, '>')
    if not res then return taken end
    local entries = res[1][2]
    for _, entry in ipairs(entries) do
      local holder = state.express and redis.call('HGET', k.express, entry[1])
      if holder then
        redis.call('XCLAIM', k.stream, GROUP, holder, 0, entry[1], 'JUSTID')
      else
        fresh[#fresh + 1] = entry
        taken = taken + 1
      end
    end
    if #entries < asked then return taken end
  end
  return taken
end

-- Jobs that waited outside the stream ("<id>\0<ms>\0<packed>", wait_outside) as entries
-- delivered to `consumer`, into `fresh`: read at once when the group has read every entry, else
-- express (the head of this file).
local function deliver(k, state, consumer, elements, fresh)
  if not elements[1] then return end
  local express = not all_read(k.stream)
  local entries = {}
  for _, element in ipairs(elements) do
    local id, at, packed = string.match(element, '^([^%z]*)%z([^%z]*)%z(.*)$')
    local attempts, replayed, task, options, payload = unpack_delayed(packed)
    entries[#entries + 1] = redis.call('XADD', k.stream, '*', entry_fields(id, payload, attempts, at,
                                                                           replayed, task, options, express))
  end
  if not express then
    for _, entry in ipairs(redis.call('XREADGROUP', 'GROUP', GROUP, consumer, 'COUNT', #entries,
                                      'STREAMS', k.stream, '>')[1][2]) do
      fresh[#fresh + 1] = entry
    end
    return
  end
  state.express = true
  for first = 1, #entries, 1000 do
    local chunk, marks = {}, {}
    for i = first, math.min(first + 999, #entries) do
      chunk[#chunk + 1] = entries[i]
      marks[#marks + 1] = entries[i]
      marks[#marks + 1] = consumer
    end
    redis.call('HSET', k.express, unpack(marks))
    chunk[#chunk + 1] = 'FORCE'
    chunk[#chunk + 1] = 'RETRYCOUNT'
    chunk[#chunk + 1] = 1
    for _, entry in ipairs(redis.call('XCLAIM', k.stream, GROUP, consumer, 0, unpack(chunk))) do
      fresh[#fresh + 1] = entry
    end
  end
end

-- Fills up to `count` slots with waiting jobs, in the order the head of this file says.
local function take_waiting(k, consumer, count, express)
  local fresh = {}
  local state = {express = express}
  if count <= 0 then return fresh end
  if redis.call('EXISTS', k.priorities) == 0 then   -- only the stream's jobs wait
    read_stream(k, state, consumer, count, fresh)
    return fresh
  end
  local levels, counts = {}, redis.call('HGETALL', k.priorities)
  for i = 1, #counts, 2 do levels[#levels + 1] = tonumber(counts[i]) end
  table.sort(levels, function(x, y) return x > y end)
  local taken, stream_dry = {}, false
  for _, level in ipairs(levels) do
    local ring, from_level = beside(k.priorities, READY .. level), 0
    while #fresh + #taken < count do
      local key = redis.call('LINDEX', ring, 0)
      if not key then break end
      if level == 0 and key == STREAM_TURN then
        if redis.call('LLEN', ring) <= 1 then break end   -- no key left: the stream's jobs below
        redis.call('LMOVE', ring, ring, 'LEFT', 'RIGHT')
        if not stream_dry and read_stream(k, state, consumer, 1, fresh) == 0 then stream_dry = true end
      else
        local list = beside(k.priorities, FAIR .. level .. ':' .. key)
        local element = redis.call('LPOP', list)
        if redis.call('EXISTS', list) == 0 then
          redis.call('LPOP', ring)
        else
          redis.call('LMOVE', ring, ring, 'LEFT', 'RIGHT')
        end
        if element then
          taken[#taken + 1] = element
          from_level = from_level + 1
        end
      end
    end
    if from_level > 0 then count_out(k.priorities, level, from_level) end   -- may remove the ring
    if #fresh + #taken >= count then break end
  end
  deliver(k, state, consumer, taken, fresh)
  if #fresh < count and not stream_dry then read_stream(k, state, consumer, count - #fresh, fresh) end
  return fresh
end

register('fetch', {
  keys = {'stream', 'delayed', 'delayed_jobs', 'reclaim_gate', 'reclaim_cursor', 'scheduled',
          'priorities', 'express'},
  args = {'consumer', 'count', 'visibility_ms', 'reclaim_interval_ms'},
  flags = OOM_ALLOWED,
}, function(k, a)
  local refused = worker_only('fetch', 'XREADGROUP', 'GROUP', GROUP, a.consumer, 'STREAMS', k.stream, '>')
  if refused then return refused end
  local stream, consumer, count, visibility = k.stream, a.consumer, tonumber(a.count), a.visibility_ms
  ensure_group(stream)
  local now = now_ms()
  -- due retries and scheduled jobs become waiting entries; this is why no worker polls for them
  for _, set in ipairs({k.delayed, k.scheduled}) do
    local due = redis.call('ZRANGEBYSCORE', set, '-inf', now, 'LIMIT', 0, 1000)
    for _, id in ipairs(due) do
      local packed = redis.call('HGET', k.delayed_jobs, id)
      if packed then
        local attempts, replayed, task, options, payload = unpack_delayed(packed)
        local level, key = priority_of(options)
        if level > 0 or key ~= '' then   -- back to its level and key
          shared.wait_outside(k.priorities, level, key, id, tostring(now),
                       pack_delayed(attempts, replayed, task, options, payload))
        else
          redis.call('XADD', stream, '*', entry_fields(id, payload, attempts, tostring(now), replayed,
                                                       task, options))
        end
      end
      redis.call('ZREM', set, id)
      redis.call('HDEL', k.delayed_jobs, id)
    end
  end
  local express = redis.call('EXISTS', k.express) == 1
  local wake = express and redis.call('HGET', k.express, WAKE)
  if wake then   -- a submit's wake entry (submit.lua) has done its work: this fetch runs
    redis.call('XACK', stream, GROUP, wake)
    redis.call('XDEL', stream, wake)
    redis.call('HDEL', k.express, WAKE)
    express = redis.call('EXISTS', k.express) == 1
  end
  local reclaimed = {}
  -- jobs given back by a draining worker go first, to whoever asks next
  local released = redis.call('XPENDING', stream, GROUP, '-', '+', count, RELEASED_CONSUMER)
  if released[1] then
    local ids, deliveries = {}, {}
    for _, info in ipairs(released) do
      ids[#ids + 1] = info[1]
      deliveries[info[1]] = info[4] + 1
    end
    for _, entry in ipairs(redis.call('XCLAIM', stream, GROUP, consumer, 0, unpack(ids))) do
      if entry[2] then table.insert(reclaimed, {entry[1], entry[2], deliveries[entry[1]]}) end
    end
  end
  -- every fetch may reclaim stale entries into its free slots, so redelivery after a mass
  -- worker death scales with the free slots of all fetching workers; the gate only rests the
  -- scan for an interval after a full pass over the pending entries found nothing stale
  if count > #reclaimed and redis.call('EXISTS', k.reclaim_gate) == 0 then
    local cursor = redis.call('GET', k.reclaim_cursor) or '0-0'
    local res = redis.call('XAUTOCLAIM', stream, GROUP, consumer, visibility, cursor, 'COUNT',
                           count - #reclaimed)
    redis.call('SET', k.reclaim_cursor, res[1])
    for _, entry in ipairs(res[2]) do
      local info = redis.call('XPENDING', stream, GROUP, entry[1], entry[1], 1)
      local deliveries = 1
      if info[1] then deliveries = info[1][4] end
      table.insert(reclaimed, {entry[1], entry[2], deliveries})
    end
    if res[1] == '0-0' and #res[2] == 0 then
      redis.call('SET', k.reclaim_gate, '1', 'PX', a.reclaim_interval_ms)
      -- consumers of workers that are gone and hold nothing would pile up in the group
      for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', stream, GROUP)) do
        local info = {}
        for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
        if info['pending'] == 0 and info['idle'] > tonumber(visibility) * 10
            and info['name'] ~= consumer then
          redis.call('XGROUP', 'DELCONSUMER', stream, GROUP, info['name'])
        end
      end
    end
  end
  if reclaimed[1] and express then   -- their holder is `consumer` now
    for _, entry in ipairs(reclaimed) do
      if redis.call('HEXISTS', k.express, entry[1]) == 1 then redis.call('HSET', k.express, entry[1], consumer) end
    end
  end
  local fresh = take_waiting(k, consumer, count - #reclaimed, express)
  local next_due = -1
  for _, set in ipairs({k.delayed, k.scheduled}) do
    local first = redis.call('ZRANGE', set, 0, 0, 'WITHSCORES')
    if first[2] and (next_due < 0 or tonumber(first[2]) < next_due) then next_due = tonumber(first[2]) end
  end
  return {now, next_due, reclaimed, fresh}
end)
