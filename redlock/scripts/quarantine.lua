-- Quarantine (redlock/src/quarantine.rs), prepended to every script that can grant: a node
-- that lost its data or part of it has forgotten leases (and fence counts) that other clients
-- still count on, so it must not vote until every one of them has expired. Two signs:
--  * the marker key (no ttl) is gone with the data (restart without persistence, FLUSHALL,
--    failover to an empty replica): 'lost';
--  * the marker was written under another server process: it ends with the run_id of the
--    process that wrote it, and every restart (or a replica's promotion) brings a new one,
--    while an RDB snapshot or a lagging replica brings back the marker without the writes
--    made after it: 'restarted'. Persistence cannot be trusted from here (a script cannot
--    read appendfsync), so every restart counts.
-- The quarantine then lasts the longest ttl any client may use, which the caller appends as
-- the last ARGV (ms); the marker becomes '<why>:<ms>:<run_id>'. The ARGV before it names the
-- shard: '' on a standalone server ('quorate:marker', 'quorate:quarantine'); on a Redis
-- Cluster node ':{n}', a hash tag of a slot the shard serving this call's keys owns, so each
-- shard keeps its own marker and quarantine ('quorate:marker:{n}'): a shard that restarts or
-- fails over loses its own data, not the cluster's. A client with a longer
-- maximum stretches a running quarantine to its own. Refusals are the error
-- 'QUORATE_QUARANTINED <ms left>'. The usual case costs a GET and an EXISTS (and INFO server,
-- once per server process or, for EVAL scripts, every time: run_id.lua).
--
-- Fence counters are lost or rolled back with the data too, and a quarantine does not bring
-- them back: a node whose marker says 'lost' or 'restarted' at <ms> keeps its counters at
-- least <ms> x 1000 (fence_floor, which fenced scripts apply before INCR). Every fence
-- handed out before that restart is below it (fences grow by one per grant; that bound
-- holds while a key sees fewer than 1,000 fenced grants per ms and the servers' clocks
-- agree to within the time between two restarts).
local fence_floor = 0
-- The marker while it says the node lost data or restarted ('lost:...', 'restarted:...'),
-- else false: state without a ttl (a semaphore's size) written before it is not trusted.
local restart_mark = false
do
  local max_ms = tonumber(table.remove(ARGV))
  local shard = table.remove(ARGV)
  local marker_key, quarantine_key = 'quorate:marker' .. shard, 'quorate:quarantine' .. shard
  local run = run_id()
  local marker = redis.call('GET', marker_key)
  local t = nil
  local function now_ms()
    t = t or redis.call('TIME')
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  local why = false
  if not marker then
    why = 'lost'
  elseif string.byte(marker, -41) ~= 58 or string.sub(marker, -40) ~= run then -- 58: ':'
    why = 'restarted'
    -- A marker without a run_id ('fresh:<s>', 'lost:<ms>': quorate before run_ids) is kept
    -- if it was surely written by this process (after its start, by uptime): upgrading must
    -- not quarantine every node at once. Anything else from an earlier process counts.
    local written = tonumber(string.match(marker, '^%a+:(%d+)$') or '')
    if written then
      if written < 1e11 then written = written * 1000 end
      local up = tonumber(string.match(redis.call('INFO', 'server'), 'uptime_in_seconds:(%d+)'))
      if written >= now_ms() - up * 1000 then
        redis.call('SET', marker_key, marker .. ':' .. run)
        why = false
      end
    end
  end
  if why then
    marker = why .. ':' .. now_ms() .. ':' .. run
  end
  -- only 'lost:...' and 'restarted:...' need parsing ('fresh:...' is the usual marker)
  local first = string.byte(marker)
  local kind, since = nil, nil
  if first == 108 or first == 114 then -- 'l', 'r'
    kind, since = string.match(marker, '^(%a+):(%d+):')
  end
  if kind == 'lost' or kind == 'restarted' then
    fence_floor = tonumber(since) * 1000
    restart_mark = marker
  end
  if why or redis.call('EXISTS', quarantine_key) == 1 then
    local now = now_ms()
    if why then
      redis.call('SET', marker_key, marker)
      redis.call('SET', quarantine_key, now, 'PX', max_ms)
    end
    local left = redis.call('PTTL', quarantine_key)
    if left > 0 then
      local stretched = tonumber(redis.call('GET', quarantine_key)) + max_ms - now
      if stretched > left then
        redis.call('PEXPIRE', quarantine_key, stretched)
        left = stretched
      end
      return redis.error_reply('QUORATE_QUARANTINED ' .. left)
    end
  end
end

-- A fence counter's next value: INCR, kept above this node's fence_floor (written as an
-- integer string: Lua numbers print as floats beyond 14 digits).
local function fence_incr(key)
  local value = redis.call('INCR', key)
  if value <= fence_floor then
    value = fence_floor + 1
    redis.call('SET', key, string.format('%.0f', value))
  end
  return value
end
