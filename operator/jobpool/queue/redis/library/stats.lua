-- stats: the pool's figures at one instant; registrations past their expiry are removed.
-- -> {xlen, in_flight, delayed, dead, counters(flat), workers(flat, live ones),
--     held(flat: consumer, count), scheduled, delayed_due, scheduled_due, progress(flat: id, value),
--     outside(flat: level, jobs waiting outside the stream at that level)}
-- *_due: retries and scheduled jobs due within horizon_ms of now (what the autoscaler counts).
-- `held` is what each consumer has not acknowledged, read with in_flight at the same instant:
-- the workers' busy slots (their own published counts lag behind a burst by up to a publish
-- interval).
register('stats', {
  keys = {'stream', 'delayed', 'dead', 'counters', 'workers', 'scheduled', 'progress', 'priorities',
          'express'},
  args = {'now_ms', 'horizon_ms'},
  flags = OOM_ALLOWED,
}, function(k, a)
  local now = tonumber(a.now_ms)
  local pending, length = in_flight_count(k.stream), redis.call('XLEN', k.stream)
  local wake, held = wake_entry(k.stream, k.express)   -- a submit's wake entry is no job
  if wake then
    length = length - 1
    if held then pending = pending - 1 end
  end
  local held = {}
  local ok, summary = pcall(redis.call, 'XPENDING', k.stream, GROUP)
  if ok and summary[4] then
    for _, consumer in ipairs(summary[4]) do
      held[#held + 1] = consumer[1]
      held[#held + 1] = consumer[2]
    end
  end
  local live = {}
  local all = redis.call('HGETALL', k.workers)
  for i = 1, #all, 2 do
    local expires = tonumber(string.match(all[i + 1], '"expiresAt":%s*([%d%.]+)') or '0')
    if expires * 1000 < now then
      redis.call('HDEL', k.workers, all[i])
    else
      live[#live + 1] = all[i]
      live[#live + 1] = all[i + 1]
    end
  end
  local horizon = now_ms() + tonumber(a.horizon_ms)
  return {length, pending, redis.call('ZCARD', k.delayed),
          redis.call('XLEN', k.dead), redis.call('HGETALL', k.counters), live, held,
          redis.call('ZCARD', k.scheduled), redis.call('ZCOUNT', k.delayed, '-inf', horizon),
          redis.call('ZCOUNT', k.scheduled, '-inf', horizon), redis.call('HGETALL', k.progress),
          redis.call('HGETALL', k.priorities)}
end)
