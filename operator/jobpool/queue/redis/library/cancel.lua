-- Shared with job.lua and fail.lua, which the library loads after this file (in name order); kept
-- out of the prelude, whose commands every role's ACL user gets.
-- The stream entries of the live jobs `wanted` (a set of ids), looked for among the first `limit`
-- pending entries, then the first `limit` entries of the stream, in one pass for all of them (a
-- batch's cancel names thousands) that stops once every one is found -> id -> {entry id, its
-- fields (flat), the consumer holding it (nil: not delivered yet), its deliveries}. A job's id
-- is its entry's first field (entry_fields). A job delivered past unread entries (fetch.lua's express
-- jobs) is held by the consumer the `express` hash names.
local SCAN_PAGE = 200

local function find_entries(stream, wanted, limit, express)
  local found, missing = {}, 0
  for _ in pairs(wanted) do missing = missing + 1 end
  local ok, pending = pcall(redis.call, 'XPENDING', stream, GROUP, '-', '+', limit)
  local held = {}
  if ok then
    for _, info in ipairs(pending) do
      held[info[1]] = info
      if missing > 0 then
        local entry = redis.call('XRANGE', stream, info[1], info[1])[1]
        if entry and wanted[entry[2][2]] and not found[entry[2][2]] then
          found[entry[2][2]] = {info[1], entry[2], redis.call('HGET', express, info[1]) or info[2], info[4]}
          missing = missing - 1
        end
      end
    end
  end
  local start, scanned = '-', 0
  while missing > 0 and scanned < limit do
    local page = redis.call('XRANGE', stream, start, '+', 'COUNT', math.min(SCAN_PAGE, limit - scanned))
    if #page == 0 then break end
    for _, entry in ipairs(page) do
      local id = entry[2][2]
      if wanted[id] and not found[id] then
        local info = held[entry[1]] or (ok and redis.call('XPENDING', stream, GROUP, entry[1], entry[1], 1)[1])
        if info then
          found[id] = {entry[1], entry[2], redis.call('HGET', express, entry[1]) or info[2], info[4]}
        else
          found[id] = {entry[1], entry[2], nil, 0}
        end
        missing = missing - 1
      end
    end
    scanned = scanned + #page
    start = '(' .. page[#page][1]
  end
  return found
end

-- One live job's entry (find_entries) -> entry id, fields, consumer, deliveries; nil when not found.
local function find_entry(stream, id, limit, express)
  local found = find_entries(stream, {[id] = true}, limit, express)[id]
  if found then return found[1], found[2], found[3], found[4] end
  return nil
end

-- `taken` jobs fewer waiting at `level`; a level with none left loses its ring (shared with
-- fetch.lua).
local function count_out(priorities, level, taken)
  if redis.call('HINCRBY', priorities, level, -taken) <= 0 then
    redis.call('HDEL', priorities, level)
    redis.call('DEL', beside(priorities, READY .. level))
  end
end

-- A job waiting outside the stream (a priority or a fairness key: wait_outside), looked for among
-- the first `limit` of them -> its list, its element, its level, its fairness key; nil when not
-- found there.
local function find_outside(priorities, id, limit)
  local head, seen = id .. '\0', 0
  for _, level in ipairs(redis.call('HKEYS', priorities)) do
    for _, key in ipairs(redis.call('LRANGE', beside(priorities, READY .. level), 0, -1)) do
      if not (level == '0' and key == STREAM_TURN) then
        local list = beside(priorities, FAIR .. level .. ':' .. key)
        local start, size = 0, redis.call('LLEN', list)
        while start < size and seen < limit do
          local chunk = redis.call('LRANGE', list, start, start + math.min(999, limit - seen - 1))
          for _, element in ipairs(chunk) do
            if string.sub(element, 1, #head) == head then return list, element, tonumber(level), key end
          end
          start, seen = start + #chunk, seen + #chunk
        end
      end
    end
  end
  return nil
end

-- A cancelled job leaves the live ones; its id is kept, the newest CANCELLED_KEPT, for `job` and
-- `cancel` to say it was cancelled.
local CANCELLED_KEPT = 10000

-- A job that ended without a result is announced in the `ended` stream (about the newest
-- ENDED_KEPT), which result(id) reads blocking with the results stream: its waiter returns at once.
local ENDED_KEPT = 10000

local function record_ended(ended, id, outcome)
  redis.call('XADD', ended, 'MAXLEN', '~', ENDED_KEPT, '*', ENDED.id, id, ENDED.outcome, outcome)
end

local function record_cancelled(live, errors, progress, cancelled, ended, id, now)
  record_ended(ended, id, 'cancelled')
  redis.call('SREM', live, id)
  redis.call('HDEL', errors, id)
  redis.call('HDEL', progress, id)
  redis.call('ZADD', cancelled, now, id)
  redis.call('ZREMRANGEBYRANK', cancelled, 0, -CANCELLED_KEPT - 1)
end

-- cancel: withdraw jobs by id (a worker's function) -> one outcome per id, in order:
--   'cancelled': it was scheduled, a retry waiting for its backoff, or waiting (in the stream, or
--     outside it with a priority or a fairness key; the first `scan_limit` of each): it is removed,
--     counted (counters.cancelled) and kept as cancelled (record_cancelled);
--   'cancelling': a worker runs it: the request waits in `cancel_requests` (entry id -> job id)
--     until its worker's next heartbeat, which returns it; the worker cancels the handler and
--     fails the attempt, which fail records as cancelled (never retried); an ack first wins;
--   'succeeded', 'dead', 'was cancelled': it had finished; nothing changes;
--   'unknown': the pool does not know the id (or it waits beyond the first `scan_limit` entries).
register('cancel', {
  keys = {'stream', 'live', 'delayed', 'delayed_jobs', 'scheduled', 'dead_ids', 'counters', 'errors',
          'progress', 'cancelled', 'cancel_requests', 'priorities', 'express', 'ended', 'job_results...'},
  args = {'scan_limit', 'ids...'},
}, function(k, a)
  local refused = worker_only('cancel', 'XDEL', k.stream, '0-0')
  if refused then return refused end
  local outcomes, count, now = {}, 0, now_ms()
  local in_stream = {}   -- live, neither scheduled nor a retry: waiting or running
  for i, id in ipairs(a.ids) do
    local outcome = 'unknown'
    if redis.call('EXISTS', k.job_results[i]) == 1 then
      outcome = 'succeeded'
    elseif redis.call('HEXISTS', k.dead_ids, id) == 1 then
      outcome = 'dead'
    elseif redis.call('SISMEMBER', k.live, id) == 1 then
      if redis.call('ZREM', k.scheduled, id) + redis.call('ZREM', k.delayed, id) > 0 then
        redis.call('HDEL', k.delayed_jobs, id)
        outcome = 'cancelled'
      else
        local list, element, level, key = find_outside(k.priorities, id, tonumber(a.scan_limit))
        if list then
          redis.call('LREM', list, 1, element)
          if redis.call('EXISTS', list) == 0 then
            redis.call('LREM', beside(k.priorities, READY .. level), 1, key)
          end
          count_out(k.priorities, level, 1)
          outcome = 'cancelled'
        else
          in_stream[id] = true
        end
      end
    elseif redis.call('ZSCORE', k.cancelled, id) then
      outcome = 'was cancelled'
    end
    outcomes[i] = outcome
  end
  local found = next(in_stream) and find_entries(k.stream, in_stream, tonumber(a.scan_limit), k.express) or {}
  for i, id in ipairs(a.ids) do
    local entry = in_stream[id] and found[id]
    if entry then
      local entry_id, consumer = entry[1], entry[3]
      in_stream[id] = nil   -- an id named twice is dealt with once
      if consumer and consumer ~= RELEASED_CONSUMER then
        redis.call('HSET', k.cancel_requests, entry_id, id)
        outcomes[i] = 'cancelling'
      else   -- waiting, or given back on drain and not fetched again yet
        if consumer then redis.call('XACK', k.stream, GROUP, entry_id) end
        redis.call('XDEL', k.stream, entry_id)
        redis.call('HDEL', k.cancel_requests, entry_id)   -- asked while it ran, then given back
        redis.call('HDEL', k.express, entry_id)
        outcomes[i] = 'cancelled'
      end
    end
    if outcomes[i] == 'cancelled' then
      record_cancelled(k.live, k.errors, k.progress, k.cancelled, k.ended, id, now)
      count = count + 1
    end
  end
  if count > 0 then redis.call('HINCRBY', k.counters, 'cancelled', count) end
  return outcomes
end)
