-- job: one job's state, read only (a worker's function: it reads the dead letters' errors and
-- the waiting entries, which a producer's user may not).
-- -> {state, task, attempts, worker, enqueued_ms, due_ms, finished_ms, error, progress, result,
--     priority, fairness_key};
-- state: succeeded | dead | cancelled | scheduled | retrying | running | waiting, or '' for an id the pool
-- does not know (never submitted, or its result expired); a field not known is ''.
-- Waiting and running entries are found among the first `scan_limit` entries of the stream
-- (the pending ones first), and among the first `scan_limit` jobs waiting outside it (a priority
-- or a fairness key); a live job past them is reported waiting without its details.
register('job', {
  keys = {'stream', 'live', 'delayed', 'delayed_jobs', 'scheduled', 'dead', 'dead_ids', 'progress',
          'errors', 'cancelled', 'priorities', 'express', 'job_result'},
  args = {'id', 'scan_limit'},
  flags = {'no-writes'},
}, function(k, a)
  local id = a.id
  local job = {state = '', task = '', attempts = '', worker = '', enqueued = '', due = '',
               finished = '', error = redis.call('HGET', k.errors, id) or '',
               progress = redis.call('HGET', k.progress, id) or '', result = '', options = ''}
  local function reply()
    local level, key = priority_of(job.options)
    return {job.state, job.task, job.attempts, job.worker, job.enqueued, job.due, job.finished,
            job.error, job.progress, job.result, tostring(level), key}
  end
  local stored = redis.call('GET', k.job_result)
  if stored then
    job.state = 'succeeded'
    job.attempts, job.result = string.match(stored, '^(%d+):(.*)$')
    return reply()
  end
  local dead_entry = redis.call('HGET', k.dead_ids, id)
  if dead_entry then
    local found = redis.call('XRANGE', k.dead, dead_entry, dead_entry)
    if found[1] then
      local f = found[1][2]
      local fields = {}
      for i = 1, #f, 2 do fields[f[i]] = f[i + 1] end
      job.state, job.task, job.attempts = 'dead', fields[DEAD.task] or '', fields[DEAD.attempts]
      job.error, job.finished, job.options = fields[DEAD.error], fields[DEAD.time], fields[DEAD.options]
      return reply()
    end
  end
  for _, set in ipairs({{k.scheduled, 'scheduled'}, {k.delayed, 'retrying'}}) do
    local due = redis.call('ZSCORE', set[1], id)
    if due then
      job.state, job.due = set[2], due
      local packed = redis.call('HGET', k.delayed_jobs, id)
      if packed then
        local attempts, _, task, options = unpack_delayed(packed)
        job.attempts, job.task, job.options = attempts, task, options
      end
      return reply()
    end
  end
  if redis.call('SISMEMBER', k.live, id) == 0 then
    local at = redis.call('ZSCORE', k.cancelled, id)
    if at then job.state, job.finished = 'cancelled', at end
    return reply()
  end
  job.state = 'waiting'
  local _, element = find_outside(k.priorities, id, tonumber(a.scan_limit))
  if element then
    local at, packed = string.match(element, '^[^%z]*%z([^%z]*)%z(.*)$')
    local attempts, _, task, options = unpack_delayed(packed)
    job.attempts, job.task, job.options, job.enqueued = attempts, task, options, at
    return reply()
  end
  local entry, fields, consumer, deliveries = find_entry(k.stream, id, tonumber(a.scan_limit), k.express)
  if entry then
    local named = {}
    for i = 1, #fields, 2 do named[fields[i]] = fields[i + 1] end
    job.task, job.attempts, job.enqueued = named[ENTRY.task] or '', named[ENTRY.attempts], named[ENTRY.time]
    job.options = named[ENTRY.options] or ''
    if consumer and consumer ~= RELEASED_CONSUMER then   -- released on drain: waiting for a fetch
      job.state, job.worker = 'running', consumer
      job.attempts = tostring(tonumber(job.attempts) + deliveries)
    end
  end
  return reply()
end)
