-- ack_then_fetch: a worker's ack and its next fetch in one call (a round trip less per batch),
-- for the slots the ack frees: the fetch runs only once the ack is done, so the worker never
-- holds more. -> {ack's reply, fetch's reply}; the ack's excess is for trim_results as after ack
register('ack_then_fetch', {
  keys = {'stream', 'live', 'counters', 'results', 'progress', 'errors', 'cancel_requests', 'express',
          'delayed', 'delayed_jobs', 'reclaim_gate', 'reclaim_cursor', 'scheduled', 'priorities',
          'job_results...'},
  args = {'result_ttl_ms', 'results_cap', 'blob', 'consumer', 'count', 'visibility_ms',
          'reclaim_interval_ms'},
  flags = OOM_ALLOWED,
}, function(k, a)
  local acked = jobpool.ack(k, a)
  if acked.err then return acked end
  return {acked, jobpool.fetch(k, a)}
end)
