-- replay: dead letters back to the waiting jobs, marked replayed (a second dead-lettering is
-- not counted twice); all(1|0), or the given ids -> number replayed
register('replay', {
  keys = {'stream', 'live', 'dead', 'dead_ids', 'priorities', 'express'},
  args = {'all', 'ids...'},
}, function(k, a)
  local refused = worker_only('replay', 'XDEL', k.dead, '0-0')
  if refused then return refused end
  local entries = {}
  if a.all == '1' then
    local all = redis.call('HGETALL', k.dead_ids)
    for i = 2, #all, 2 do entries[#entries + 1] = all[i] end
  else
    for _, id in ipairs(a.ids) do
      local e = redis.call('HGET', k.dead_ids, id)
      if e then entries[#entries + 1] = e end
    end
  end
  ensure_group(k.stream)
  local now = tostring(now_ms())
  local n = 0
  for _, e in ipairs(entries) do
    local found = redis.call('XRANGE', k.dead, e, e)
    if found[1] then
      local f = found[1][2]
      local fields = {}
      for i = 1, #f, 2 do fields[f[i]] = f[i + 1] end
      local id = fields[DEAD.id]
      redis.call('SADD', k.live, id)
      local task, options = fields[DEAD.task] or '', fields[DEAD.options] or ''
      local level, key = priority_of(options)
      if level > 0 or key ~= '' then
        shared.wait_outside(k.priorities, level, key, id, now, pack_delayed('0', '1', task, options,
                                                                    fields[DEAD.payload]))
        shared.wake(k.stream, k.express)
      else
        redis.call('XADD', k.stream, '*', entry_fields(id, fields[DEAD.payload], '0', now, '1',
                                                   task, options))
      end
      redis.call('XDEL', k.dead, e)
      redis.call('HDEL', k.dead_ids, id)
      n = n + 1
    end
  end
  return n
end)
