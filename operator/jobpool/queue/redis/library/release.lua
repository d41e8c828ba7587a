-- release: give a draining worker's jobs back -> number released.
-- Entries move to a consumer nobody reads from, look idle forever and keep their delivery
-- count, so the next fetch of any worker reclaims them at once without counting an attempt.
-- Only entries `consumer` still owns move: one another worker reclaimed stays with it.
register('release', {
  keys = {'stream', 'reclaim_gate', 'reclaim_cursor', 'express'},
  args = {'consumer', 'entry_ids...'},
  flags = OOM_ALLOWED,
}, function(k, a)
  local refused = worker_only('release', 'XCLAIM', k.stream, GROUP, a.consumer, '0', '0-0')
  if refused then return refused end
  local n = 0
  for _, entry in ipairs(a.entry_ids) do
    local ok, info = pcall(redis.call, 'XPENDING', k.stream, GROUP, entry, entry, 1)
    local holder = ok and info[1] and redis.call('HGET', k.express, entry)
    if ok and info[1] and (holder == a.consumer or (not holder and info[1][2] == a.consumer)) then
      redis.call('XCLAIM', k.stream, GROUP, RELEASED_CONSUMER, 0, entry, 'IDLE', 1000000000000,
                 'RETRYCOUNT', math.max(info[1][4] - 1, 0), 'JUSTID')
      if holder then redis.call('HSET', k.express, entry, RELEASED_CONSUMER) end
      n = n + 1
    end
  end
  redis.call('DEL', k.reclaim_gate)
  redis.call('SET', k.reclaim_cursor, '0-0')
  return n
end)
