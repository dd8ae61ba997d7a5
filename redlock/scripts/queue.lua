-- The waiter queue of a lock key (prepended to acquire.lua, release.lua and batch.lua; see
-- redlock/src/queue.rs). Per key two sorted sets, passed in KEYS: the queue (member = waiter,
-- '<client id>:<sequence>', plus ':f' for a fair waiter; score = the waiter's ticket, its lock call's start in microseconds
-- on the servers' clock as the waiter reads it, so every node orders the same waiters alike)
-- and the entries' deadlines (score = this server's time in ms). A waiter that stops refreshing its entry drops out.
-- A release passes the key to the queue's head: the key holds 'q:<member>' for a short claim,
-- and the head's client is woken on 'quorate:wake:<client id>' with the key as message.

local function server_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Drops the entries whose deadline passed.
local function prune(queue, expiry, now)
  local gone = redis.call('ZRANGEBYSCORE', expiry, '-inf', now)
  for _, member in ipairs(gone) do
    redis.call('ZREM', queue, member)
    redis.call('ZREM', expiry, member)
  end
end

-- Whether a fair waiter (member ending in ':f') is queued ahead of the waiter `member` with
-- `ticket`, or ahead of a caller that does not queue (member nil): fair(true) is the waiter's
-- promise, so it binds every caller, queued or not, fair or not. Queues are short: one entry
-- per waiting client.
local function fair_ahead(queue, ticket, member)
  local entries = redis.call('ZRANGE', queue, 0, -1, 'WITHSCORES')
  for j = 1, #entries, 2 do
    local other, other_ticket = entries[j], tonumber(entries[j + 1])
    if member and (other == member or other_ticket > ticket
        or (other_ticket == ticket and other > member)) then
      return false
    end
    if string.sub(other, -2) == ':f' then
      return true
    end
  end
  return false
end

-- The first waiter and its ticket, or nil.
local function head(queue)
  local first = redis.call('ZRANGE', queue, 0, 0, 'WITHSCORES')
  return first[1], tonumber(first[2])
end

-- Adds (or refreshes) a waiter; the queue keys live as long as their longest entry.
local function enqueue(queue, expiry, member, ticket, lifetime, now)
  redis.call('ZADD', queue, 'NX', ticket, member)
  redis.call('ZADD', expiry, now + lifetime, member)
  for _, k in ipairs({queue, expiry}) do
    if redis.call('PTTL', k) < lifetime then
      redis.call('PEXPIRE', k, lifetime)
    end
  end
end

-- After the holder's delete: claim the key for the head for claim_ms and wake its client,
-- or delete the key when nobody waits. Returns 1 when a head was woken.
-- (Without a queue, the common case, it costs one EXISTS more than a plain delete.)
local function pass_on(key, queue, expiry, claim_ms, wake_prefix)
  if redis.call('EXISTS', queue) == 1 then
    prune(queue, expiry, server_ms())
    local member = head(queue)
    if member then
      redis.call('SET', key, 'q:' .. member, 'PX', claim_ms)
      redis.call('PUBLISH', wake_prefix .. string.match(member, '^[^:]*'), key)
      return 1
    end
  end
  redis.call('DEL', key)
  return 0
end
