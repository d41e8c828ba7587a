-- What every function of the library shares. The loader puts before this file the library's
-- name and the names Python holds (one home per fact):
--   LIBRARY (the library's versioned name), GROUP, RELEASED_CONSUMER,
--   ENTRY (the fields of a waiting entry), RESULT (of a results entry), DEAD (of a dead letter),
--   MEMORY (of the pool's memory hash), ENDED (of an ended entry),
--   PRIORITIES, READY, FAIR, STREAM_TURN (the names of the keys of jobs waiting outside the stream)
-- Each function file calls `register` with its contract: the names of its keys and arguments,
-- in the order the caller sends them; a name ending in '...' takes the rest as a list. The body
-- reads them as k.<name> and a.<name> only (tests/unit/queue/test_library.py checks both
-- against the Python wrappers in functions.py).

local jobpool = {}   -- the bodies by name, so that one function may run another's
-- Helpers a file defines for files loaded before it (they run after the whole load): the commands
-- a helper calls are then those of its own file's function (the ACL users are read from there).
local shared = {}

-- Redis refuses a function that may write, at its start, while used memory is over maxmemory;
-- the worker's steps run then too (they free memory: acks remove entries, and results and dead
-- letters are capped), while submit and replay, which add jobs, are refused.
local OOM_ALLOWED = {'allow-oom'}

-- A function's keys or arguments by the names of its contract (the names worked out once).
local function binder(function_name, kind, names)
  local fixed, rest = {}, nil
  for _, name in ipairs(names) do
    if string.sub(name, -3) == '...' then rest = string.sub(name, 1, -4) else fixed[#fixed + 1] = name end
  end
  local count = #fixed
  local usage = 'jobpool: ' .. function_name .. ' takes ' .. kind .. ' ' .. table.concat(names, ' ')
  return function(values)
    if #values < count then error(usage .. ' (' .. #values .. ' given)') end
    local bound = {}
    for i = 1, count do bound[fixed[i]] = values[i] end
    if rest then
      local list = {}
      for i = count + 1, #values do list[#list + 1] = values[i] end
      bound[rest] = list
    end
    return bound
  end
end

-- Registers `body(k, a)` as the function LIBRARY_<name>.
local function register(name, contract, body)
  jobpool[name] = body
  local bind_keys, bind_args   -- made at the first call: a library's load runs no Lua library
  redis.register_function{
    function_name = LIBRARY .. '_' .. name,
    callback = function(keys, args)
      if not bind_keys then
        bind_keys, bind_args = binder(name, 'keys', contract.keys), binder(name, 'args', contract.args)
      end
      return body(bind_keys(keys), bind_args(args))
    end,
    flags = contract.flags,
  }
end

-- The functions run with the caller's ACL, and a producer's user holds the pool's keys that the
-- submit reads; what only a worker may do is refused here, before anything is written, for the
-- steps whose commands a producer's selectors would let through or refuse only half-way.
local function worker_only(name, ...)
  if redis.acl_check_cmd(...) then return nil end
  return redis.error_reply('NOPERM this user has no permissions to run ' .. LIBRARY .. '_' .. name ..
                           ": it is a pool worker's function (this user may not " ..
                           string.lower(select(1, ...)) .. ' the pool\'s keys)')
end

-- Creates the group, with the stream or on a stream a producer wrote before the first worker
-- (its entries are then delivered from the start); BUSYGROUP means it exists already.
local function ensure_group(stream)
  pcall(redis.call, 'XGROUP', 'CREATE', stream, GROUP, '0', 'MKSTREAM')
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- pending entries held by real consumers; entries given back on drain count as waiting
local function in_flight_count(stream)
  local ok, summary = pcall(redis.call, 'XPENDING', stream, GROUP)
  if not ok then return 0 end
  local pending = summary[1]
  if summary[4] then
    for _, consumer in ipairs(summary[4]) do
      if consumer[1] == RELEASED_CONSUMER then pending = pending - tonumber(consumer[2]) end
    end
  end
  return pending
end

-- A submit's wake entry (submit.lua), no job -> its entry id and whether a worker's read holds it;
-- nil when there is none.
local function wake_entry(stream, express)
  local wake = redis.call('HGET', express, WAKE)
  if not wake then return nil end
  local ok, held = pcall(redis.call, 'XPENDING', stream, GROUP, wake, wake, 1)
  return wake, ok and held[1] ~= nil
end

-- the stream's jobs that wait for a worker (a wake entry is no job)
local function waiting_count(stream, express)
  local count = redis.call('XLEN', stream) - in_flight_count(stream)
  local wake, held = wake_entry(stream, express)
  if wake and not held then count = count - 1 end
  return count
end

-- Whether `consumer` still holds the delivery of `entry`: a worker that stalled past the
-- visibility timeout has lost it to the worker that reclaimed it, and one that finished it
-- (or released it) holds it no more. An express entry's holder is the one `express` names: a
-- worker's blocking read (outside the library) may have taken it over in the group.
local function holds(stream, entry, consumer, express)
  local ok, info = pcall(redis.call, 'XPENDING', stream, GROUP, entry, entry, 1, consumer)
  if ok and info[1] ~= nil then return true end
  return ok and redis.call('HGET', express, entry) == consumer
    and redis.call('XPENDING', stream, GROUP, entry, entry, 1)[1] ~= nil
end

-- A job's priority level and fairness key, from its options (codec.encode_options:
-- "timeout,max_attempts,backoff[,priority,fairness_key]") -> level 0-9, key ('' for none)
local function priority_of(options)
  if not options or options == '' then return 0, '' end
  local level, key = string.match(options, '^[^,]*,[^,]*,[^,]*,(%d?),([%w._-]*)$')
  return tonumber(level) or 0, key or ''
end

-- The key of `name` beside the pool's `priorities` hash (the same hash tag).
local function beside(priorities, name)
  return string.sub(priorities, 1, -#PRIORITIES - 1) .. name
end

-- Jobs travel as one NUL-separated blob (ids are printable and JSON escapes control
-- characters, so NUL never occurs inside a field): packing thousands of separate arguments
-- costs the client more than the function costs Redis.
local function split_blob(blob, width)
  local rows, row, pos = {}, {}, 1
  local size = #blob
  while pos <= size + 1 do
    local stop = string.find(blob, '\0', pos, true) or (size + 1)
    row[#row + 1] = string.sub(blob, pos, stop - 1)
    if #row == width then
      rows[#rows + 1] = row
      row = {}
    end
    pos = stop + 1
  end
  return rows
end

-- Redis's own figures (maxmemory 0 = no limit); INFO is checked against the caller's ACL.
local function memory_used_and_max()
  local info = redis.call('INFO', 'memory')
  return tonumber(string.match(info, 'used_memory:(%d+)')),
    tonumber(string.match(info, 'maxmemory:(%d+)'))
end

-- A waiting entry's fields in the order XADD writes them; a job without a task or options of
-- its own has no such field; `express`: one delivered past unread entries (fetch.lua).
local function entry_fields(id, payload, attempts, at, replayed, task, options, express)
  local fields = {ENTRY.id, id, ENTRY.payload, payload, ENTRY.attempts, attempts, ENTRY.time, at,
                  ENTRY.replayed, replayed}
  if task and task ~= '' then
    fields[#fields + 1] = ENTRY.task
    fields[#fields + 1] = task
  end
  if options and options ~= '' then
    fields[#fields + 1] = ENTRY.options
    fields[#fields + 1] = options
  end
  if express then
    fields[#fields + 1] = ENTRY.express
    fields[#fields + 1] = '1'
  end
  return unpack(fields)
end

-- A retry waiting in the delayed set, packed as "<attempts>:<replayed>:<payload>", with
-- "=<task>:" and then "~<options>:" before the payload for a job with a task or options (a JSON
-- payload never starts with '=' or '~'; task names and options hold no ':').
local function pack_delayed(attempts, replayed, task, options, payload)
  local packed = attempts .. ':' .. replayed .. ':'
  if task ~= '' then packed = packed .. '=' .. task .. ':' end
  if options ~= '' then packed = packed .. '~' .. options .. ':' end
  return packed .. payload
end

-- -> attempts, replayed, task, options, payload
local function unpack_delayed(packed)
  local attempts, replayed, rest = string.match(packed, '^(%d+):(%d):(.*)$')
  local task, options = '', ''
  local found, after = string.match(rest, '^=([^:]*):(.*)$')
  if found then task, rest = found, after end
  found, after = string.match(rest, '^~([^:]*):(.*)$')
  if found then options, rest = found, after end
  return attempts, replayed, task, options, rest
end
