-- Single-key acquires and releases from one client, in one call, in order (backend/batch.rs).
-- ARGV has three per request: 'a', token, ttl in ms (an acquire, not queued: SET NX PX,
-- refused while a fair waiter is queued, as acquire.lua does) or 'r', token, the releasing
-- client's id ('' for an undo, which announces nothing); each with three keys: the lock key,
-- its queue and its queue deadlines (a release grants the key to the queue's head, as in
-- release.lua).
-- Returns three values per request: an acquire {1, 0, false} granted or {0, pttl, holder}
-- refused (holder_of, prepended; pttl -2: free, but a fair waiter is queued); a release
-- {deleted, 0, false}.
local out = {}
local k = 1
local requests = #ARGV / 3
for i = 1, requests do
  local a = 3 * i - 2
  local kind, token, extra = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local key = KEYS[k]
  if kind == 'a' then
    local queue = KEYS[k + 1]
    local fair_waiting = false
    if redis.call('EXISTS', queue) == 1 and redis.call('EXISTS', key) == 0 then
      prune(queue, KEYS[k + 2], server_ms())
      fair_waiting = fair_ahead(queue, nil, nil)
    end
    k = k + 3
    if fair_waiting then
      out[3 * i - 2], out[3 * i - 1], out[3 * i] = 0, -2, false
    elseif redis.call('SET', key, token, 'NX', 'PX', extra) then
      out[3 * i - 2], out[3 * i - 1], out[3 * i] = 1, 0, false
    else
      local value = redis.call('GET', key)
      out[3 * i - 2], out[3 * i - 1] = 0, redis.call('PTTL', key)
      out[3 * i] = holder_of(value)
    end
  else
    local deleted = 0
    if redis.call('GET', key) == token then
      deleted = 1
      pass_on(key, KEYS[k + 1], KEYS[k + 2])
      if extra ~= '' then
        redis.call('PUBLISH', RELEASE_CHANNEL_PREFIX .. key, extra)
      end
    end
    k = k + 3
    out[3 * i - 2], out[3 * i - 1], out[3 * i] = deleted, 0, false
  end
end
return out
