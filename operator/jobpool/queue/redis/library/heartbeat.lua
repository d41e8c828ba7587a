-- heartbeat: publish a worker's registration and keep its running jobs from being reclaimed.
-- XCLAIM with the same consumer and JUSTID resets the idle time of running jobs, so the
-- visibility timeout never takes them from a live worker. -> 1
register('heartbeat', {
  keys = {'stream', 'workers'},
  args = {'consumer', 'info', 'entry_ids...'},
  flags = OOM_ALLOWED,
}, function(k, a)
  local refused = worker_only('heartbeat', 'XCLAIM', k.stream, GROUP, a.consumer, '0', '0-0')
  if refused then return refused end
  redis.call('HSET', k.workers, a.consumer, a.info)
  if #a.entry_ids > 0 and redis.call('EXISTS', k.stream) == 1 then
    -- Only entries this consumer still owns: a job another worker reclaimed stays theirs.
    local ids = {}
    for _, entry in ipairs(a.entry_ids) do
      if holds(k.stream, entry, a.consumer) then ids[#ids + 1] = entry end
    end
    -- JUSTID resets the idle time without counting another delivery (attempts stay true).
    if #ids > 0 then
      ids[#ids + 1] = 'JUSTID'
      pcall(redis.call, 'XCLAIM', k.stream, GROUP, a.consumer, 0, unpack(ids))
    end
  end
  return 1
end)
