-- fail: a failed attempt of a job its worker holds: a retry after delay_ms, or a dead letter
-- (outcome dead_lettered after the last attempt, permanent at once: counted apart).
-- -> the outcome, or "duplicate" when the worker no longer holds the delivery: another worker
-- reclaimed the job (and runs it) or finished it, so a late failure neither schedules another
-- copy nor dead-letters a job that may succeed; it is counted as a duplicate.
register('fail', {
  keys = {'stream', 'live', 'delayed', 'delayed_jobs', 'dead', 'dead_ids', 'counters', 'progress',
          'errors', 'cancelled', 'cancel_requests', 'express', 'ended', 'job_result'},
  args = {'entry_id', 'consumer', 'id', 'attempts', 'payload', 'error', 'outcome', 'delay_ms',
          'replayed', 'dead_letter_cap', 'task', 'options'},
  flags = OOM_ALLOWED,
}, function(k, a)
  local refused = worker_only('fail', 'XACK', k.stream, GROUP, '0-0')
  if refused then return refused end
  local stream, id, attempts, outcome = k.stream, a.id, a.attempts, a.outcome
  if not holds(stream, a.entry_id, a.consumer, k.express) then
    -- this same failure sent again after its reply was lost: already recorded, not counted again
    local waiting = redis.call('HGET', k.delayed_jobs, id)
    if outcome == 'retried' and waiting and string.sub(waiting, 1, #attempts + 1) == attempts .. ':' then
      return 'retried'
    end
    if outcome == 'cancelled' and redis.call('ZSCORE', k.cancelled, id) then return outcome end
    local dead_entry = redis.call('HGET', k.dead_ids, id)
    if outcome ~= 'retried' and dead_entry then
      local found = redis.call('XRANGE', k.dead, dead_entry, dead_entry)
      if found[1] then
        local f = found[1][2]
        for i = 1, #f, 2 do
          if f[i] == DEAD.attempts and f[i + 1] == attempts then return outcome end
        end
      end
    end
    redis.call('HINCRBY', k.counters, 'duplicates', 1)
    return 'duplicate'
  end
  redis.call('XACK', stream, GROUP, a.entry_id)
  redis.call('XDEL', stream, a.entry_id)
  redis.call('HDEL', k.express, a.entry_id)
  redis.call('HDEL', k.progress, id)
  if redis.call('EXISTS', k.job_result) == 1 then
    redis.call('HINCRBY', k.counters, 'duplicates', 1)
    return 'duplicate'
  end
  local now = now_ms()
  -- a job asked to be cancelled ends cancelled, whatever its attempt's end: never retried
  if redis.call('HDEL', k.cancel_requests, a.entry_id) == 1 or outcome == 'cancelled' then
    record_cancelled(k.live, k.errors, k.progress, k.cancelled, k.ended, id, now)
    redis.call('HINCRBY', k.counters, 'cancelled', 1)
    return 'cancelled'
  end
  if outcome == 'retried' then
    redis.call('ZADD', k.delayed, now + tonumber(a.delay_ms), id)
    redis.call('HSET', k.delayed_jobs, id, pack_delayed(attempts, a.replayed, a.task, a.options,
                                                             a.payload))
    redis.call('HSET', k.errors, id, a.error)   -- shown by job until the job finishes
    redis.call('HINCRBY', k.counters, 'retried', 1)
    return 'retried'
  end
  if outcome ~= 'permanent' then outcome = 'dead_lettered' end   -- the counter it names
  local dead_entry = redis.call('XADD', k.dead, '*', DEAD.id, id, DEAD.payload, a.payload,
                                DEAD.attempts, attempts, DEAD.error, a.error, DEAD.time, tostring(now),
                                DEAD.task, a.task, DEAD.options, a.options)
  local previous = redis.call('HGET', k.dead_ids, id)
  if previous then redis.call('XDEL', k.dead, previous) end
  redis.call('HSET', k.dead_ids, id, dead_entry)
  redis.call('SREM', k.live, id)
  redis.call('HDEL', k.errors, id)           -- the dead letter holds it now
  record_ended(k.ended, id, outcome)
  if a.replayed ~= '1' then redis.call('HINCRBY', k.counters, outcome, 1) end
  -- at most `dead_letter_cap` dead letters are kept: the oldest go first
  local excess = redis.call('XLEN', k.dead) - tonumber(a.dead_letter_cap)
  if excess > 0 then
    for _, old in ipairs(redis.call('XRANGE', k.dead, '-', '+', 'COUNT', math.min(excess, 1000))) do
      if redis.call('HGET', k.dead_ids, old[2][2]) == old[1] then redis.call('HDEL', k.dead_ids, old[2][2]) end
      redis.call('XDEL', k.dead, old[1])
    end
  end
  return outcome
end)
