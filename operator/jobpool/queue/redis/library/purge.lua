-- purge: remove dead letters; all(1|0), or the given ids -> number purged
register('purge', {
  keys = {'dead', 'dead_ids'},
  args = {'all', 'ids...'},
  flags = OOM_ALLOWED,
}, function(k, a)
  local refused = worker_only('purge', 'XDEL', k.dead, '0-0')
  if refused then return refused end
  if a.all == '1' then
    local n = redis.call('XLEN', k.dead)
    redis.call('DEL', k.dead, k.dead_ids)
    return n
  end
  local n = 0
  for _, id in ipairs(a.ids) do
    local e = redis.call('HGET', k.dead_ids, id)
    if e then
      n = n + redis.call('XDEL', k.dead, e)
      redis.call('HDEL', k.dead_ids, id)
    end
  end
  return n
end)
