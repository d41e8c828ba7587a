-- heartbeat: publish a worker's registration and keep its running jobs from being reclaimed.
-- XCLAIM with the same consumer and JUSTID resets the idle time of running jobs, so the
-- visibility timeout never takes them from a live worker. It also publishes the task names the
-- worker serves (space-separated, "" for none: a --command worker) until `expires_ms`, for
-- submit to refuse a task no live worker serves. -> the entry ids among `entry_ids` whose jobs
-- were asked to be cancelled (cancel.lua), for the worker to cancel them.
register('heartbeat', {
  keys = {'stream', 'workers', 'tasks', 'cancel_requests', 'express'},
  args = {'consumer', 'info', 'tasks', 'expires_ms', 'entry_ids...'},
  flags = OOM_ALLOWED,
}, function(k, a)
  local refused = worker_only('heartbeat', 'XCLAIM', k.stream, GROUP, a.consumer, '0', '0-0')
  if refused then return refused end
  redis.call('HSET', k.workers, a.consumer, a.info)
  local serves, now = {}, now_ms()
  for task in string.gmatch(a.tasks, '%S+') do serves[task] = true end
  local published = redis.call('HGETALL', k.tasks)
  for i = 1, #published, 2 do   -- a task no live worker serves any more goes
    if tonumber(published[i + 1]) < now and not serves[published[i]] then
      redis.call('HDEL', k.tasks, published[i])
    end
  end
  for task in pairs(serves) do
    local known = tonumber(redis.call('HGET', k.tasks, task) or '0')
    if known < tonumber(a.expires_ms) then redis.call('HSET', k.tasks, task, a.expires_ms) end
  end
  local cancel = {}
  if #a.entry_ids > 0 and redis.call('EXISTS', k.stream) == 1 then
    -- Only entries this consumer still owns: a job another worker reclaimed stays theirs.
    local ids = {}
    for _, entry in ipairs(a.entry_ids) do
      if holds(k.stream, entry, a.consumer, k.express) then ids[#ids + 1] = entry end
    end
    if #ids > 0 then
      local asked = redis.call('HMGET', k.cancel_requests, unpack(ids))
      for i, entry in ipairs(ids) do
        if asked[i] then cancel[#cancel + 1] = entry end
      end
    end
    -- JUSTID resets the idle time without counting another delivery (attempts stay true); an
    -- express entry a blocking read took over in the group comes back to its holder.
    if #ids > 0 then
      ids[#ids + 1] = 'JUSTID'
      pcall(redis.call, 'XCLAIM', k.stream, GROUP, a.consumer, 0, unpack(ids))
    end
  end
  return cancel
end)
