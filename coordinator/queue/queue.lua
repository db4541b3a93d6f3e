#!lua name=lisa
-- queue.lua: the job queue's state changes as Redis 7 functions, the
-- library "lisa" (see coordinator/queue/queue.h for the keys and states).
-- Every function takes the key prefix as ARGV[1] and no declared keys
-- (FCALL name 0 prefix ...): the keys are computed from the prefix, so one
-- library serves every queue on the server. Times come from the server's
-- clock (TIME), never from a client's.
--
-- Every state change goes through job_move / job_final, which keep the
-- batch counters (queued running retry done failed cancelled cancelling)
-- summing to total and append the change to P:events.
--
-- Deliberately not here: reading work (XREADGROUP cannot block inside a
-- function; queue.c reads and then calls lisa_start), message contents
-- (the request and result are opaque bytes), anything that needs the
-- caller's clock or randomness except the jitter it passes in.

local GROUP = 'workers'
local DAY_MS = 86400000
local DEFAULT_TTL_MS = 7 * DAY_MS
local FAILED_TTL_MS = 30 * DAY_MS
local EVENTS_MAXLEN = '100000'
local PRIOS = {'hi', 'normal', 'lo'}
local PRIO_OK = {hi = true, normal = true, lo = true}
local FINAL = {done = true, failed = true, cancelled = true}
local COUNTER = {queued = 'queued', running = 'running', retry_wait = 'retry', done = 'done',
                 failed = 'failed', cancelled = 'cancelled', cancel_requested = 'cancelling'}
local PAYLOAD_LOST = 'payload lost (stream entry deleted)'
local REQUEST_LOST = 'payload lost (request missing)'

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- An integer as Redis stores it (no exponent, no fraction).
local function int(x)
  return string.format('%d', math.floor(tonumber(x) or 0))
end

local function fail(msg)
  return redis.error_reply('ERR ' .. msg)
end

-- false when args has fewer than n arguments or no prefix.
local function have_args(args, n)
  return #args >= n and args[1] ~= ''
end

local function stream_ok(P, stream)
  for _, p in ipairs(PRIOS) do
    if stream == P .. ':jobs:' .. p then return true end
  end
  return false
end

local function job_key(P, id) return P .. ':job:' .. id end
local function batch_key(P, b) return P .. ':batch:' .. b end

-- The job hash as a table with .id, or nil when there is none.
local function job_load(P, id)
  local flat = redis.call('HGETALL', job_key(P, id))
  if #flat == 0 then return nil end
  local j = {}
  for i = 1, #flat, 2 do j[flat[i]] = flat[i + 1] end
  j.id = id
  return j
end

local function event(P, j, now, worker, attempt, err)
  local a = {'XADD', P .. ':events', 'MAXLEN', '~', EVENTS_MAXLEN, '*', 'job', j.id,
             'batch', j.batch or '', 'state', j.state, 'ts', int(now)}
  if worker and worker ~= '' then a[#a + 1] = 'worker'; a[#a + 1] = worker end
  if attempt then a[#a + 1] = 'attempt'; a[#a + 1] = int(attempt) end
  if err and err ~= '' then a[#a + 1] = 'error'; a[#a + 1] = err end
  redis.call(unpack(a))
end

-- Moves job j to state `to`: the batch counters, the job hash (with the
-- extra field/value pairs in fields) and an event.
local function job_move(P, j, to, now, fields, worker, attempt, err)
  local b = batch_key(P, j.batch)
  if COUNTER[j.state] then redis.call('HINCRBY', b, COUNTER[j.state], -1) end
  redis.call('HINCRBY', b, COUNTER[to], 1)
  local h = {'HSET', job_key(P, j.id), 'state', to}
  for _, v in ipairs(fields or {}) do h[#h + 1] = v end
  redis.call(unpack(h))
  j.state = to
  event(P, j, now, worker, attempt, err)
end

-- job_move into a final state, and the expiry: the job hash and request
-- live ttl_ms from now; the batch remembers the latest such time and
-- expires then (with its id list and custom_id map) once none of its jobs
-- can change any more.
local function job_final(P, j, to, ttl_ms, now, fields, worker, attempt, err)
  local f = {'finished_ms', int(now)}
  for _, v in ipairs(fields or {}) do f[#f + 1] = v end
  job_move(P, j, to, now, f, worker, attempt, err)
  redis.call('PEXPIRE', job_key(P, j.id), int(ttl_ms))
  redis.call('PEXPIRE', P .. ':req:' .. j.id, int(ttl_ms))
  local b = batch_key(P, j.batch)
  local keep = tonumber(redis.call('HGET', b, 'expire_at_ms')) or 0
  if now + ttl_ms > keep then
    keep = now + ttl_ms
    redis.call('HSET', b, 'expire_at_ms', int(keep))
  end
  redis.call('HSET', b, 'last_finish_ms', int(now))
  local c = redis.call('HMGET', b, 'queued', 'running', 'retry', 'cancelling')
  if (tonumber(c[1]) or 0) + (tonumber(c[2]) or 0) + (tonumber(c[3]) or 0) +
     (tonumber(c[4]) or 0) == 0 then
    for _, k in ipairs({b, b .. ':ids', b .. ':cid'}) do
      redis.call('PEXPIREAT', k, int(keep))
    end
  end
end

local function result_ttl(j)
  local t = tonumber(j.result_ttl_ms) or 0
  if t <= 0 then t = DEFAULT_TTL_MS end
  return t
end

local function failed_ttl(j, given)
  local t = tonumber(given) or 0
  if t <= 0 then t = FAILED_TTL_MS end
  return math.max(t, result_ttl(j))
end

-- Acknowledges (when ack) and deletes a stream entry and its P:entries
-- record.
local function entry_drop(P, stream, entry, ack)
  if ack then redis.call('XACK', stream, GROUP, entry) end
  redis.call('XDEL', stream, entry)
  redis.call('HDEL', P .. ':entries', stream .. ' ' .. entry)
end

-- true when entry of stream is in worker's pending list.
local function pending_for(stream, entry, worker)
  local p = redis.pcall('XPENDING', stream, GROUP, entry, entry, 1, worker)
  return type(p) == 'table' and not p.err and #p == 1
end

-- The job when it is running (or cancel_requested) under worker with
-- token from this stream entry, else nil.
local function job_fenced(P, id, stream, entry, worker, token)
  local j = job_load(P, id)
  if not j then return nil end
  if (j.state ~= 'running' and j.state ~= 'cancel_requested') or j.owner ~= worker or
     tonumber(j.attempts) ~= tonumber(token) or j.stream ~= stream or j.entry ~= entry then
    return nil
  end
  return j
end

-- A refused finish or fail: the entry is acknowledged only when it is
-- still this worker's and no running attempt needs it (it is deleted too
-- when no job points at it any more); nothing else changes. A worker that
-- reclaimed its own job (its lease ran out, e.g. while Redis was away)
-- holds the entry for the new attempt: acknowledging it there would leave
-- that attempt's lease unrenewable and the job running with no entry
-- pending, never reclaimed.
local function stale(P, id, stream, entry, worker)
  if pending_for(stream, entry, worker) then
    local h = redis.call('HMGET', job_key(P, id), 'state', 'stream', 'entry')
    local mine = h[2] == stream and h[3] == entry
    if not (mine and (h[1] == 'running' or h[1] == 'cancel_requested')) then
      redis.call('XACK', stream, GROUP, entry)
      if not mine then entry_drop(P, stream, entry, false) end
    end
  end
  return 'stale'
end

local function cancel_finish(P, j, stream, entry, now, worker)
  entry_drop(P, stream, entry, true)
  job_final(P, j, 'cancelled', result_ttl(j), now, {}, worker, j.attempts)
end

-- lisa_batch_new(prefix, name, user) -> "B<n>"
local function batch_new(_, args)
  if not have_args(args, 1) then return fail('lisa_batch_new needs a prefix') end
  local P = args[1]
  local b = 'B' .. redis.call('INCR', P .. ':seq')
  local now = now_ms()
  redis.call('HSET', batch_key(P, b), 'name', args[2] or '', 'user', args[3] or '',
             'created_ms', int(now), 'total', 0, 'queued', 0, 'running', 0, 'retry', 0,
             'done', 0, 'failed', 0, 'cancelled', 0, 'cancelling', 0, 'first_start_ms', 0,
             'last_finish_ms', 0)
  redis.call('ZADD', P .. ':batches', now, b)
  -- forget the oldest few batches whose keys have expired
  for _, old in ipairs(redis.call('ZRANGE', P .. ':batches', 0, 9)) do
    if redis.call('EXISTS', batch_key(P, old)) == 0 then redis.call('ZREM', P .. ':batches', old) end
  end
  return b
end

-- lisa_submit(prefix, batch, index, custom_id, name, user, priority,
--             max_attempts, result_ttl_ms, image, prompt, req_bytes)
--   -> {job_id, "new" | "dup"}
local function submit(_, args)
  if not have_args(args, 12) then return fail('lisa_submit needs 12 arguments') end
  local P, b, index, cid, name, user, prio, maxa, ttl, image, prompt, req = unpack(args, 1, 12)
  if not PRIO_OK[prio] then
    return fail('unknown priority "' .. prio .. '" (hi, normal or lo)')
  end
  if not index:match('^%d+$') then return fail('bad job index "' .. index .. '"') end
  local bk = batch_key(P, b)
  if redis.call('EXISTS', bk) == 0 then return fail('unknown batch ' .. b) end
  if cid ~= '' then
    local have = redis.call('HGET', bk .. ':cid', cid)
    if have then return {have, 'dup'} end
  end
  local id = b .. '_' .. index
  local jk = job_key(P, id)
  if redis.call('EXISTS', jk) == 1 then
    local other = redis.call('HGET', jk, 'custom_id') or ''
    if cid ~= '' and other ~= cid then
      return fail('job ' .. id .. ' exists with custom_id "' .. other .. '", not "' .. cid .. '"')
    end
    return {id, 'dup'}
  end
  maxa = tonumber(maxa) or 0
  if maxa < 1 then maxa = 3 end
  ttl = tonumber(ttl) or 0
  if ttl <= 0 then ttl = DEFAULT_TTL_MS end
  local now = now_ms()
  local stream = P .. ':jobs:' .. prio
  local entry = redis.call('XADD', stream, '*', 'job', id)
  redis.call('HSET', jk, 'state', 'queued', 'batch', b, 'index', index, 'custom_id', cid,
             'name', name, 'user', user, 'priority', prio, 'created_ms', int(now),
             'started_ms', 0, 'finished_ms', 0, 'attempts', 0, 'max_attempts', int(maxa),
             'owner', '', 'stream', stream, 'entry', entry, 'error', '', 'image', image,
             'prompt', prompt, 'result_ttl_ms', int(ttl), 'retry_at_ms', 0)
  redis.call('SET', P .. ':req:' .. id, req)
  redis.call('RPUSH', bk .. ':ids', id)
  if cid ~= '' then redis.call('HSET', bk .. ':cid', cid, id) end
  redis.call('HINCRBY', bk, 'total', 1)
  redis.call('HINCRBY', bk, 'queued', 1)
  redis.call('HSET', P .. ':entries', stream .. ' ' .. entry, id)
  for _, k in ipairs({bk, bk .. ':ids', bk .. ':cid'}) do redis.call('PERSIST', k) end
  event(P, {id = id, batch = b, state = 'queued'}, now)
  return {id, 'new'}
end

-- lisa_start(prefix, job, stream, entry, worker)
--   -> {"run", attempt, created_ms, started_ms, req_bytes}
--    | {"skip", state} | {"dead", reason}
local function start(_, args)
  if not have_args(args, 5) then return fail('lisa_start needs 5 arguments') end
  local P, id, stream, entry, worker = unpack(args, 1, 5)
  if not stream_ok(P, stream) then return fail('not a job stream: ' .. stream) end
  -- only the consumer the entry was delivered to may start it (one that
  -- read it, then lost it to a reclaim before starting, must not steal it)
  if not pending_for(stream, entry, worker) then return {'skip', 'not_pending'} end
  local now = now_ms()
  local j = job_load(P, id)
  if not j then
    entry_drop(P, stream, entry, true)
    return {'skip', 'missing'}
  end
  if j.stream ~= stream or j.entry ~= entry then
    -- an entry the job has left (cancelled while queued, or requeued)
    redis.call('XACK', stream, GROUP, entry)
    redis.call('XDEL', stream, entry)
    if redis.call('HGET', P .. ':entries', stream .. ' ' .. entry) == id then
      redis.call('HDEL', P .. ':entries', stream .. ' ' .. entry)
    end
    return {'skip', j.state}
  end
  if j.state == 'cancel_requested' then
    cancel_finish(P, j, stream, entry, now, worker)
    return {'skip', 'cancel_requested'}
  end
  if j.state ~= 'queued' and j.state ~= 'running' then
    entry_drop(P, stream, entry, true)
    return {'skip', j.state}
  end
  local attempts = tonumber(j.attempts) or 0
  local maxa = tonumber(j.max_attempts) or 3
  if attempts >= maxa then
    local owner = j.owner ~= '' and j.owner or worker
    local reason = string.format('started %d times without a result (last owner %s)', attempts,
                                 owner)
    redis.call('XADD', P .. ':dead', '*', 'job', id, 'batch', j.batch, 'reason', reason,
               'deliveries', int(attempts), 'error', j.error or '')
    entry_drop(P, stream, entry, true)
    job_final(P, j, 'failed', failed_ttl(j), now, {'error', reason}, worker, attempts, reason)
    return {'dead', reason}
  end
  local req = redis.call('GET', P .. ':req:' .. id)
  if not req then
    entry_drop(P, stream, entry, true)
    job_final(P, j, 'failed', failed_ttl(j), now, {'error', REQUEST_LOST}, worker, attempts,
              REQUEST_LOST)
    return {'dead', REQUEST_LOST}
  end
  attempts = redis.call('HINCRBY', job_key(P, id), 'attempts', 1)
  job_move(P, j, 'running', now, {'owner', worker, 'started_ms', int(now)}, worker, attempts)
  if (tonumber(redis.call('HGET', batch_key(P, j.batch), 'first_start_ms')) or 0) == 0 then
    redis.call('HSET', batch_key(P, j.batch), 'first_start_ms', int(now))
  end
  return {'run', attempts, tonumber(j.created_ms) or 0, now, req}
end

-- lisa_touch(prefix, worker, n, n x (job, stream, entry, token))
--   -> n x "ok" | "lost" | "cancel"
local function touch(_, args)
  if not have_args(args, 3) then return fail('lisa_touch needs prefix, worker and n') end
  local P, worker, n = args[1], args[2], tonumber(args[3]) or -1
  if n < 0 or #args < 3 + 4 * n then return fail('lisa_touch: n does not match the arguments') end
  local out = {}
  for i = 0, n - 1 do
    local id, stream, entry, token = args[4 + 4 * i], args[5 + 4 * i], args[6 + 4 * i],
                                     args[7 + 4 * i]
    local v = 'lost'
    if stream_ok(P, stream) then
      local h = redis.call('HMGET', job_key(P, id), 'state', 'owner', 'attempts', 'stream', 'entry')
      if (h[1] == 'running' or h[1] == 'cancel_requested') and h[2] == worker and
         tonumber(h[3]) == tonumber(token) and h[4] == stream and h[5] == entry and
         pending_for(stream, entry, worker) then
        redis.call('XCLAIM', stream, GROUP, worker, 0, entry, 'JUSTID')
        v = h[1] == 'running' and 'ok' or 'cancel'
      end
    end
    out[#out + 1] = v
  end
  return out
end

-- lisa_finish(prefix, job, stream, entry, worker, token, res_bytes, ttl_ms)
--   -> "done" | "cancelled" | "stale"   (ttl_ms 0: the job's result_ttl_ms)
local function finish(_, args)
  if not have_args(args, 8) then return fail('lisa_finish needs 8 arguments') end
  local P, id, stream, entry, worker, token, res, ttl = unpack(args, 1, 8)
  if not stream_ok(P, stream) then return fail('not a job stream: ' .. stream) end
  local j = job_fenced(P, id, stream, entry, worker, token)
  if not j then return stale(P, id, stream, entry, worker) end
  local now = now_ms()
  if j.state == 'cancel_requested' then
    cancel_finish(P, j, stream, entry, now, worker)
    return 'cancelled'
  end
  ttl = tonumber(ttl) or 0
  if ttl <= 0 then ttl = result_ttl(j) end
  redis.call('SET', P .. ':res:' .. id, res, 'PX', int(ttl))
  entry_drop(P, stream, entry, true)
  job_final(P, j, 'done', ttl, now, {'error', ''}, worker, j.attempts)
  local m = P .. ':tput:' .. int(now / 60000)
  redis.call('INCR', m)
  redis.call('EXPIRE', m, 3600)
  return 'done'
end

-- lisa_fail(prefix, job, stream, entry, worker, token, error, retryable,
--           backoff_ms, jitter01, res_bytes_or_empty, failed_ttl_ms)
--   -> "retry" | "failed" | "cancelled" | "stale"
local function fail_job(_, args)
  if not have_args(args, 12) then return fail('lisa_fail needs 12 arguments') end
  local P, id, stream, entry, worker, token, err, retryable, backoff, jitter, res, fttl =
    unpack(args, 1, 12)
  if not stream_ok(P, stream) then return fail('not a job stream: ' .. stream) end
  local j = job_fenced(P, id, stream, entry, worker, token)
  if not j then return stale(P, id, stream, entry, worker) end
  local now = now_ms()
  if j.state == 'cancel_requested' then
    cancel_finish(P, j, stream, entry, now, worker)
    return 'cancelled'
  end
  local attempts = tonumber(j.attempts) or 1
  local maxa = tonumber(j.max_attempts) or 3
  if retryable == '1' and attempts < maxa then
    local base = math.max(tonumber(backoff) or 0, 0)
    local r = math.min(math.max(tonumber(jitter) or 0.5, 0), 1)
    local at = now + math.floor(base * 2 ^ (attempts - 1) * (0.75 + 0.5 * r))
    entry_drop(P, stream, entry, true)
    redis.call('ZADD', P .. ':delayed', at, id)
    job_move(P, j, 'retry_wait', now, {'retry_at_ms', int(at), 'error', err, 'entry', ''},
             worker, attempts, err)
    return 'retry'
  end
  local ttl = failed_ttl(j, fttl)
  if res ~= '' then redis.call('SET', P .. ':res:' .. id, res, 'PX', int(ttl)) end
  entry_drop(P, stream, entry, true)
  job_final(P, j, 'failed', ttl, now, {'error', err}, worker, attempts, err)
  return 'failed'
end

-- lisa_cancel(prefix, job) -> {"cancelled" | "cancel_requested" | "finished"
--                              | "unknown", previous_state}
local function cancel(_, args)
  if not have_args(args, 2) then return fail('lisa_cancel needs prefix and job') end
  local P, id = args[1], args[2]
  local j = job_load(P, id)
  if not j then return {'unknown', ''} end
  local was = j.state
  local now = now_ms()
  if was == 'queued' or was == 'retry_wait' then
    if was == 'queued' and stream_ok(P, j.stream) and j.entry ~= '' then
      entry_drop(P, j.stream, j.entry, false)
    end
    redis.call('ZREM', P .. ':delayed', id)
    job_final(P, j, 'cancelled', result_ttl(j), now, {})
    return {'cancelled', was}
  elseif was == 'running' then
    job_move(P, j, 'cancel_requested', now, {}, j.owner, j.attempts)
    return {'cancel_requested', was}
  elseif was == 'cancel_requested' then
    return {'cancel_requested', was}
  end
  return {'finished', was}
end

-- lisa_promote(prefix, max) -> how many retry_wait jobs were queued again
local function promote(_, args)
  if not have_args(args, 1) then return fail('lisa_promote needs a prefix') end
  local P = args[1]
  local max = tonumber(args[2]) or 100
  local now = now_ms()
  local ids = redis.call('ZRANGEBYSCORE', P .. ':delayed', '-inf', now, 'LIMIT', 0, max)
  local n = 0
  for _, id in ipairs(ids) do
    redis.call('ZREM', P .. ':delayed', id)
    local j = job_load(P, id)
    if j and j.state == 'retry_wait' then
      local stream = P .. ':jobs:' .. (PRIO_OK[j.priority] and j.priority or 'normal')
      local entry = redis.call('XADD', stream, '*', 'job', id)
      redis.call('HSET', P .. ':entries', stream .. ' ' .. entry, id)
      job_move(P, j, 'queued', now, {'stream', stream, 'entry', entry, 'retry_at_ms', 0})
      n = n + 1
    end
  end
  return n
end

-- A deleted entry that XAUTOCLAIM reported: its job (when it still
-- belongs to that entry) fails, "payload lost".
local function entry_lost(P, stream, entry, now)
  local key = stream .. ' ' .. entry
  local id = redis.call('HGET', P .. ':entries', key)
  if not id then return end
  redis.call('HDEL', P .. ':entries', key)
  local j = job_load(P, id)
  if not j or j.stream ~= stream or j.entry ~= entry then return end
  if j.state == 'cancel_requested' then
    job_final(P, j, 'cancelled', result_ttl(j), now, {}, j.owner, j.attempts)
  elseif j.state == 'queued' or j.state == 'running' then
    job_final(P, j, 'failed', failed_ttl(j), now, {'error', PAYLOAD_LOST}, j.owner, j.attempts,
              PAYLOAD_LOST)
  end
end

-- lisa_reclaim(prefix, worker, min_idle_ms, count)
--   -> flat list of (job, stream, entry) claimed for worker
local function reclaim(_, args)
  if not have_args(args, 4) then return fail('lisa_reclaim needs 4 arguments') end
  local P, worker, idle = args[1], args[2], args[3]
  local count = tonumber(args[4]) or 0
  if count < 1 then return fail('lisa_reclaim: count must be at least 1') end
  local out = {}
  local now = now_ms()
  for _, prio in ipairs(PRIOS) do
    local stream = P .. ':jobs:' .. prio
    local cursor = '0-0'
    for _ = 1, 10 do
      local left = count - #out / 3
      if left < 1 then break end
      local r = redis.pcall('XAUTOCLAIM', stream, GROUP, worker, idle, cursor, 'COUNT', left)
      if type(r) ~= 'table' or r.err then break end
      for _, e in ipairs(r[2]) do
        local id
        if type(e[2]) == 'table' then
          for i = 1, #e[2], 2 do
            if e[2][i] == 'job' then id = e[2][i + 1] end
          end
        end
        if id then
          out[#out + 1] = id; out[#out + 1] = stream; out[#out + 1] = e[1]
        else
          entry_drop(P, stream, e[1], true)
        end
      end
      for _, d in ipairs(r[3] or {}) do entry_lost(P, stream, d, now) end
      cursor = r[1]
      if cursor == '0-0' then break end
    end
  end
  return out
end

-- lisa_heartbeat(prefix, worker, ttl_ms, field, value, ...) -> server ms
local function heartbeat(_, args)
  if not have_args(args, 3) then return fail('lisa_heartbeat needs prefix, worker and ttl') end
  local P, worker = args[1], args[2]
  local ttl = tonumber(args[3]) or 0
  if ttl <= 0 then ttl = 30000 end
  local now = now_ms()
  redis.call('ZADD', P .. ':workers', now, worker)
  -- workers not heard of for a day are forgotten
  redis.call('ZREMRANGEBYSCORE', P .. ':workers', '-inf', now - DAY_MS)
  local wk = P .. ':worker:' .. worker
  local h = {'HSET', wk, 'last_seen_ms', int(now)}
  for i = 4, #args - 1, 2 do
    h[#h + 1] = args[i]; h[#h + 1] = args[i + 1]
  end
  redis.call(unpack(h))
  redis.call('PEXPIRE', wk, int(ttl))
  return now
end

-- lisa_worker_gone(prefix, worker) -> 1
local function worker_gone(_, args)
  if not have_args(args, 2) then return fail('lisa_worker_gone needs prefix and worker') end
  redis.call('ZREM', args[1] .. ':workers', args[2])
  redis.call('DEL', args[1] .. ':worker:' .. args[2])
  return 1
end

redis.register_function{function_name = 'lisa_version', callback = function() return 2 end,
                        flags = {'no-writes'}}
-- The functions name no keys (the prefix gives them), which a Redis
-- Cluster cannot route: no-cluster says so.
local function register(name, fn)
  redis.register_function{function_name = name, callback = fn, flags = {'no-cluster'}}
end
register('lisa_batch_new', batch_new)
register('lisa_submit', submit)
register('lisa_start', start)
register('lisa_touch', touch)
register('lisa_finish', finish)
register('lisa_fail', fail_job)
register('lisa_cancel', cancel)
register('lisa_promote', promote)
register('lisa_reclaim', reclaim)
register('lisa_heartbeat', heartbeat)
register('lisa_worker_gone', worker_gone)
