-- The waiter queue of a lock key (helpers of acquire.lua, release.lua, leave.lua and
-- batch.lua, after queue_constants.lua; see redlock/src/queue.rs). Only functions: in a
-- function library they are defined once, when the library loads. Per key two sorted sets,
-- passed in KEYS: the queue (member = waiter, '<client id>:<grant token>:<ttl ms>', plus ':f'
-- for a fair waiter; score = the waiter's ticket, its lock call's start in microseconds on
-- the servers' clock as the waiter reads it, so every node orders the same waiters alike) and
-- the entries' deadlines (score = this server's time in ms). A waiter that stops refreshing
-- its entry drops out.
-- A release grants the key to the queue's head: the key holds the head's grant token for its
-- ttl, but no longer than its entry would have lived (a crashed head blocks no longer than
-- that); the head leaves the queue, and its client is woken on 'quorate:wake:<client id>'
-- with '<entry deadline> <grant token> <key>'. The head counts the grant as held when the
-- deadline is the one its latest refused round set here: then the grant came after that round
-- reached this node, so the key lives at least min(ttl, lifetime) from that round's start.

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

-- The grant token and ttl (ms) a release gives the waiter `member` ('q:<member>' and 0 for a
-- member without them: a claim its round takes over, which nobody counts as held).
local function grant_of(member)
  local token, ttl = string.match(member, '^[^:]*:(%x+):(%d+)')
  if not token or #token ~= 32 then
    return 'q:' .. member, 0
  end
  return token, tonumber(ttl)
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

-- The first waiter whose entry has not lapsed, its entry's deadline and the server's time,
-- or nil. The lapsed entries are dropped only when the head has lapsed (then all of them, so
-- the next head is live): pass_on runs on every release, and each redis.call costs the
-- server about as much as the command itself.
local function live_head(queue, expiry)
  local now = nil
  for _ = 1, 2 do
    local member = head(queue)
    if not member then
      return nil
    end
    now = now or server_ms()
    local deadline = tonumber(redis.call('ZSCORE', expiry, member))
    if deadline and deadline > now then
      return member, deadline, now
    end
    prune(queue, expiry, now)
    if not deadline then
      -- an entry without a deadline (enqueue writes both) is dropped as lapsed
      redis.call('ZREM', queue, member)
    end
  end
  return nil
end

-- After the holder's delete: grant the key to the head (for at least HEAD_CLAIM_MS) and wake
-- its client, or delete the key when nobody waits. Returns 1 when a head was woken.
-- (Without a queue, the common case, it costs one ZRANGE more than a plain delete.)
local function pass_on(key, queue, expiry)
  local member, deadline, now = live_head(queue, expiry)
  if member then
    local token, ttl = grant_of(member)
    local ms = math.max(math.min(ttl, deadline - now), HEAD_CLAIM_MS)
    redis.call('SET', key, token, 'PX', ms)
    redis.call('ZREM', queue, member)
    redis.call('ZREM', expiry, member)
    redis.call('PUBLISH', WAKE_CHANNEL_PREFIX .. string.match(member, '^[^:]*'),
      string.format('%.0f', deadline) .. ' ' .. token .. ' ' .. key)
    return 1
  end
  redis.call('DEL', key)
  return 0
end
