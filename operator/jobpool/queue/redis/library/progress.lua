-- progress: the last progress a running job reported, kept with the job until it finishes
-- (ack and fail remove it). Only the worker that holds the delivery may set it. -> 1 | 0
register('progress', {
  keys = {'stream', 'progress', 'express'},
  args = {'consumer', 'entry_id', 'id', 'value'},
  flags = OOM_ALLOWED,
}, function(k, a)
  local refused = worker_only('progress', 'XCLAIM', k.stream, GROUP, a.consumer, '0', '0-0')
  if refused then return refused end
  if not holds(k.stream, a.entry_id, a.consumer, k.express) then return 0 end
  redis.call('HSET', k.progress, a.id, a.value)
  return 1
end)
