-- ack: complete jobs of one worker, storing each result under its result key (one per job,
-- in the blob's order) and in the results stream.
-- args: result_ttl_ms results_cap blob of (entry_id, consumer, id, attempts, result)
-- -> {succeeded, duplicates, excess}; excess results over the cap are for trim_results to
-- remove (their keys come from the caller). succeeded includes completions this same ack
-- already recorded (sent again after its reply was lost), which the counters do not count
-- twice. Only the worker that holds the delivery completes the job. The late ack of a worker
-- that lost it (its job was reclaimed while it stalled) is a duplicate: nothing is stored or
-- removed, and the job finishes with the result of the worker that holds it now.
register('ack', {
  keys = {'stream', 'live', 'counters', 'results', 'progress', 'errors', 'cancel_requests',
          'express', 'job_results...'},
  args = {'result_ttl_ms', 'results_cap', 'blob'},
  flags = OOM_ALLOWED,
}, function(k, a)
  local refused = worker_only('ack', 'XACK', k.stream, GROUP, '0-0')
  if refused then return refused end
  local stream = k.stream
  local succeeded, resent, duplicates = 0, 0, 0
  local held, entries, ids = {}, {}, {}
  for i, done in ipairs(split_blob(a.blob, 5)) do
    local entry, consumer, id, attempts, result = done[1], done[2], done[3], done[4], done[5]
    local result_key = k.job_results[i]
    if holds(stream, entry, consumer, k.express) then
      held[#held + 1] = {done, result_key}
      entries[#entries + 1] = entry
      ids[#ids + 1] = id
    elseif redis.call('GET', result_key) == attempts .. ':' .. result then
      resent = resent + 1     -- every delivery has its own attempt number
    else
      duplicates = duplicates + 1
    end
  end
  -- XACK first: a function's first write must not be one Redis refuses past its maxmemory
  -- (then the rest may write), so acks go on and free memory; one call each for the batch
  if #entries > 0 then
    redis.call('XACK', stream, GROUP, unpack(entries))
    redis.call('XDEL', stream, unpack(entries))
    redis.call('SREM', k.live, unpack(ids))
    redis.call('HDEL', k.progress, unpack(ids))
    redis.call('HDEL', k.errors, unpack(ids))
    redis.call('HDEL', k.cancel_requests, unpack(entries))   -- it finished before its cancel
    if redis.call('EXISTS', k.express) == 1 then redis.call('HDEL', k.express, unpack(entries)) end
  end
  for _, job in ipairs(held) do
    local done, result_key = job[1], job[2]
    local id, attempts, result = done[3], done[4], done[5]
    -- the result key is the proof of a first completion: an id that already has one was
    -- written twice (by a foreign producer), so this completion is a duplicate
    if redis.call('SET', result_key, attempts .. ':' .. result, 'PX', a.result_ttl_ms, 'NX') then
      redis.call('XADD', k.results, '*', RESULT.id, id, RESULT.result, result, RESULT.attempts, attempts)
      succeeded = succeeded + 1
    else
      duplicates = duplicates + 1
    end
  end
  if succeeded > 0 then redis.call('HINCRBY', k.counters, 'succeeded', succeeded) end
  if duplicates > 0 then redis.call('HINCRBY', k.counters, 'duplicates', duplicates) end
  return {succeeded + resent, duplicates,
          math.max(0, redis.call('XLEN', k.results) - tonumber(a.results_cap))}
end)
