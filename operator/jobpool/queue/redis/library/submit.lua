-- submit: enqueue a chunk of jobs, deduplicating caller-given ids, within the pool's maxLength,
-- its payload limit and the memory Redis has left.
-- keys: the result key of each caller-given id, in the order of the blob (generated ids are
--   new: they have none)
-- A job with a priority or a fairness key (in its options) waits outside the stream
-- (wait_outside); maxLength counts it with the stream's waiting entries. A worker blocked on the
-- stream would not see it: the submit writes one wake entry (no job: its express field is 'wake',
-- `express` names it under WAKE) unless one is there; the worker's blocking read skips it and the
-- worker fetches, and every fetch removes it.
-- args: blob of (id, given(1|0), task, options, due, payload); due: "" (now), unix ms, or
--   "+ms" from Redis's clock: a job due later waits in `scheduled` (its entry packed in
--   delayed_jobs, as a retry's); partial(1|0): enqueue what fits;
--   memory_share: submits stop when used memory would pass this share of maxmemory
-- -> {processed, enqueued, room}; processed < number of jobs means the queue is full.
-- Nothing is enqueued when a payload is too large: {0, 0, room, 'payload', index, size, limit},
-- or when Redis memory is nearly full: {0, 0, room, 'memory', used, maxmemory}, or when a job
-- names a task that no live worker serves while some live worker published its tasks (in `tasks`,
-- task -> until when, ms): {0, 0, room, 'task', index, task, the tasks served, space-separated}.

-- INFO costs more than the rest of a one-job submit, so each pool reads it at most every
-- MEMORY_SAMPLE_MS into its memory hash (sample = used:maxmemory:time) and adds an estimate
-- of what it submitted since (added: the blob x 1.25 + 200 bytes a job, more than a waiting
-- job takes). The estimate only decides far from the limit (MEMORY_MARGIN of maxmemory
-- below it); nearer, every submit reads INFO. A caller whose user may not read INFO (a
-- pool's user, when the operator keeps INFO from tenants) goes by the last sample someone
-- who may wrote (the operator, through sample_memory) and the estimate since, which only grows.
local MEMORY_SAMPLE_MS, MEMORY_MARGIN = 100, 0.05

-- (used memory, maxmemory, whether it is a fresh sample to store) for a submit of `size` bytes
local function sampled_memory(sample, added, now, size, share)
  local used, max_memory, at = string.match(sample or '', '^(%d+):(%d+):(%d+)$')
  if at then
    used, max_memory = tonumber(used) + (tonumber(added) or 0), tonumber(max_memory)
    if now - tonumber(at) < MEMORY_SAMPLE_MS
        and (max_memory == 0 or used + size <= max_memory * (share - MEMORY_MARGIN)) then
      return used, max_memory, false
    end
    if not redis.acl_check_cmd('INFO', 'memory') then return used, max_memory, false end
  elseif not redis.acl_check_cmd('INFO', 'memory') then
    return 0, 0, false   -- no sample yet: Redis's own limit holds
  end
  used, max_memory = memory_used_and_max()
  return used, max_memory, true
end

local function record_memory(memory, used, max_memory, now, fresh, added)
  if fresh then
    redis.call('HSET', memory, MEMORY.sample, used .. ':' .. max_memory .. ':' .. now, MEMORY.added, added)
  else
    redis.call('HINCRBY', memory, MEMORY.added, added)
  end
end

-- A job with a priority or a fairness key waits outside the stream, as
-- "<id>\0<enqueued ms>\0<pack_delayed>" in the list of its (level, key); a key whose list was
-- empty joins the ring of its level (at level 0 with the stream's own turn beside it), and the
-- `priorities` hash counts the level's jobs. Shared with fetch.lua and replay.lua.
function shared.wait_outside(priorities, level, key, id, at, packed)
  local list = beside(priorities, FAIR .. level .. ':' .. key)
  if redis.call('RPUSH', list, id .. '\0' .. at .. '\0' .. packed) == 1 then
    local ring = beside(priorities, READY .. level)
    if redis.call('RPUSH', ring, key) == 1 and level == 0 then redis.call('RPUSH', ring, STREAM_TURN) end
  end
  redis.call('HINCRBY', priorities, level, 1)
end

-- The wake entry (the head of this file), unless one waits already. Shared with replay.lua.
function shared.wake(stream, express)
  if redis.call('HEXISTS', express, WAKE) == 0 then
    redis.call('HSET', express, WAKE, redis.call('XADD', stream, '*', ENTRY.id, '', ENTRY.express, WAKE))
  end
end

register('submit', {
  keys = {'stream', 'live', 'dead_ids', 'config', 'counters', 'memory', 'tasks', 'scheduled',
          'delayed_jobs', 'priorities', 'express', 'given_results...'},
  args = {'partial', 'blob', 'default_max_payload_bytes', 'memory_share'},
}, function(k, a)
  local stream, memory = k.stream, k.memory
  local partial = a.partial == '1'
  local jobs = split_blob(a.blob, 6)
  local n = #jobs
  local result_keys, given_count = {}, 0
  for i = 1, n do
    if jobs[i][2] == '1' then
      given_count = given_count + 1
      result_keys[i] = k.given_results[given_count]
    end
  end
  local settings = redis.call('HMGET', k.config, 'max_payload_bytes', 'max_length')
  local max_payload = tonumber(settings[1] or '') or tonumber(a.default_max_payload_bytes)
  for i = 1, n do
    local size = #jobs[i][6]
    if size > max_payload then return {0, 0, -1, 'payload', i - 1, size, max_payload} end
  end
  local now = now_ms()
  local published = redis.call('HGETALL', k.tasks)
  if published[1] then
    local served, names = {}, {}
    for i = 1, #published, 2 do
      if tonumber(published[i + 1]) >= now then
        served[published[i]] = true
        names[#names + 1] = published[i]
      end
    end
    if names[1] then   -- jobs without a task are the default task's, whoever serves it
      for i = 1, n do
        local task = jobs[i][3]
        if task ~= '' and not served[task] then
          table.sort(names)
          return {0, 0, -1, 'task', i - 1, task, table.concat(names, ' ')}
        end
      end
    end
  end
  -- refused well before Redis itself refuses writes, so workers can still store results
  local share = tonumber(a.memory_share)
  local sample = redis.call('HMGET', memory, MEMORY.sample, MEMORY.added)
  local used, max_memory, fresh = sampled_memory(sample[1], sample[2], now, #a.blob, share)
  if max_memory > 0 and used + #a.blob > max_memory * share then
    return {0, 0, -1, 'memory', used, max_memory}
  end
  local function known(i)
    local id = jobs[i][1]
    return redis.call('SISMEMBER', k.live, id) == 1 or redis.call('EXISTS', result_keys[i]) == 1
      or redis.call('HEXISTS', k.dead_ids, id) == 1
  end
  -- when job i is due, if later than now (ms); nil: now
  local function due_at(i)
    local due = jobs[i][5]
    if due == '' then return nil end
    local at = tonumber(due)
    if string.sub(due, 1, 1) == '+' then at = now + tonumber(string.sub(due, 2)) end
    if at and at > now then return at end
    return nil
  end
  local max_length = tonumber(settings[2] or '0') or 0
  local room = -1
  if max_length > 0 then
    room = max_length - waiting_count(stream, k.express)
    for _, n in ipairs(redis.call('HVALS', k.priorities)) do room = room - tonumber(n) end
    if room < 0 then room = 0 end
    if not partial then
      local new = 0
      for i = 1, n do
        if not due_at(i) and (jobs[i][2] == '0' or not known(i)) then new = new + 1 end
      end
      if new > room then return {0, 0, room} end
    end
  end
  if redis.call('EXISTS', stream) == 0 then ensure_group(stream) end
  local stamp = tostring(now)
  local processed, enqueued, outside = 0, 0, false
  for i = 1, n do
    local id, given, task, options, _, payload = unpack(jobs[i])
    local due = due_at(i)
    if given == '1' and known(i) then
      processed = processed + 1
    elseif due then    -- scheduled jobs do not wait yet: maxLength does not count them
      redis.call('SADD', k.live, id)
      redis.call('ZADD', k.scheduled, due, id)
      redis.call('HSET', k.delayed_jobs, id, pack_delayed('0', '0', task, options, payload))
      processed = processed + 1
      enqueued = enqueued + 1
    else
      if room == 0 then break end
      redis.call('SADD', k.live, id)
      local level, key = priority_of(options)
      if level > 0 or key ~= '' then
        shared.wait_outside(k.priorities, level, key, id, stamp, pack_delayed('0', '0', task, options, payload))
        outside = true
      else
        redis.call('XADD', stream, '*', entry_fields(id, payload, '0', stamp, '0', task, options))
      end
      processed = processed + 1
      enqueued = enqueued + 1
      if room > 0 then room = room - 1 end
    end
  end
  if outside then shared.wake(stream, k.express) end
  if enqueued > 0 then redis.call('HINCRBY', k.counters, 'submitted', enqueued) end
  if fresh or (max_memory > 0 and enqueued > 0) then
    record_memory(memory, used, max_memory, now, fresh, math.floor(#a.blob * 1.25) + 200 * enqueued)
  end
  return {processed, enqueued, room}
end)
