-- sample_memory: store Redis's memory figures in the pool's memory hash, for the submits of
-- users that may not read INFO themselves (the operator calls it with its own user).
-- -> {used, maxmemory}
register('sample_memory', {keys = {'memory'}, args = {}, flags = OOM_ALLOWED}, function(k, a)
  local used, max_memory = memory_used_and_max()
  redis.call('HSET', k.memory, MEMORY.sample, used .. ':' .. max_memory .. ':' .. now_ms(), MEMORY.added, 0)
  return {used, max_memory}
end)
