-- fetch: promote due retries and scheduled jobs, reclaim released and stale entries, read new
-- ones, for `count` free slots of `consumer`.
-- -> {now, next_due, reclaimed, fresh}; reclaimed = {{entry_id, fields, deliveries}...}
register('fetch', {
  keys = {'stream', 'delayed', 'delayed_jobs', 'reclaim_gate', 'reclaim_cursor', 'scheduled'},
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
        redis.call('XADD', stream, '*', entry_fields(id, payload, attempts, tostring(now), replayed,
                                                     task, options))
      end
      redis.call('ZREM', set, id)
      redis.call('HDEL', k.delayed_jobs, id)
    end
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
  local fresh = {}
  local remaining = count - #reclaimed
  if remaining > 0 then
    local res = redis.call('XREADGROUP', 'GROUP', GROUP, consumer, 'COUNT', remaining,
                           'STREAMS', stream, '>')
    if res then fresh = res[1][2] end
  end
  local next_due = -1
  for _, set in ipairs({k.delayed, k.scheduled}) do
    local first = redis.call('ZRANGE', set, 0, 0, 'WITHSCORES')
    if first[2] and (next_due < 0 or tonumber(first[2]) < next_due) then next_due = tonumber(first[2]) end
  end
  return {now, next_due, reclaimed, fresh}
end)
