-- trim_results: at most results_cap results are kept: the oldest go with their result keys.
-- args: the oldest entry ids of the results stream (read by the caller), keys: their result
-- keys in the same order -> number removed. An entry another caller removed first is skipped,
-- and with it its key, which may hold a newer result by now.
register('trim_results', {
  keys = {'results', 'job_results...'},
  args = {'entry_ids...'},
  flags = OOM_ALLOWED,
}, function(k, a)
  local refused = worker_only('trim_results', 'XDEL', k.results, '0-0')
  if refused then return refused end
  local n = 0
  for i, entry in ipairs(a.entry_ids) do
    if redis.call('XDEL', k.results, entry) == 1 then
      redis.call('DEL', k.job_results[i])
      n = n + 1
    end
  end
  return n
end)
