-- unregister: a stopping worker leaves the registry, and the group once it holds nothing. -> 1
-- A producer may prune expired registrations (stats does), so the ACL lets it HDEL the
-- registry: the role check keeps it from removing a live worker's.
register('unregister', {
  keys = {'stream', 'workers'},
  args = {'consumer'},
  flags = OOM_ALLOWED,
}, function(k, a)
  local refused = worker_only('unregister', 'XGROUP', 'DELCONSUMER', k.stream, GROUP, a.consumer)
  if refused then return refused end
  redis.call('HDEL', k.workers, a.consumer)
  local ok, pending = pcall(redis.call, 'XPENDING', k.stream, GROUP, '-', '+', 1, a.consumer)
  if ok and not pending[1] then
    pcall(redis.call, 'XGROUP', 'DELCONSUMER', k.stream, GROUP, a.consumer)
  end
  return 1
end)
