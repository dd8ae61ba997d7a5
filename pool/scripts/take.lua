-- Take up to `need` candidates of each requirement for token ARGV[1], ttl ARGV[2] ms.
-- ARGV[3] = number of requirements g, then per requirement: its candidate count, its need.
-- KEYS = every requirement's candidate keys, requirement after requirement, in the order
-- to try them.
-- A resizable semaphore adds a limit: after the requirements, ARGV 'limit', the initial
-- number of permits, then each candidate key's slot number; KEYS ends with the semaphore's
-- size record (size.lua: hash 'epoch'/'base', hash of adds). A slot at or above this
-- server's number of permits is never taken, and one of ours from an earlier round is
-- given back: a grant needs a majority that allowed the slot in the granting round, and
-- a set_permits that returned is on a majority, so no round started after it can grant a
-- slot beyond it.
-- Candidates already holding our token (kept from an earlier round of the same request)
-- count first and get their ttl refreshed; then free candidates are taken in order until
-- the requirement has `need`.
-- Returns one number per candidate key: -1 ours (held now), -2 not tried, -3 held by
-- another without expiry, -4 beyond the semaphore's size here, >= 0 held by another with
-- that many ms left; then one holder per candidate key (holder_of, prepended by
-- quorate-redlock to granting scripts): who holds a key held by another, false for the
-- others.
local token = ARGV[1]
local ttl = ARGV[2]
local groups = tonumber(ARGV[3])
local n = #KEYS
local slots = nil
local permits = nil
local limit_at = 4 + 2 * groups
if ARGV[limit_at] == 'limit' then
  n = #KEYS - 2
  slots = limit_at + 1
  local base = redis.call('HGET', KEYS[n + 1], 'base')
  if restart_mark and redis.call('HGET', KEYS[n + 1], 'synced') ~= restart_mark then
    -- this node's number may be one it forgot a change of: no slot here
    permits = -1
  elseif base then
    permits = tonumber(base)
    for _, delta in ipairs(redis.call('HVALS', KEYS[n + 2])) do
      permits = permits + tonumber(delta)
    end
  else
    permits = tonumber(ARGV[slots])
  end
end
local function beyond(i)
  return permits ~= nil and tonumber(ARGV[slots + i]) >= permits
end
local status = {}
local holders = {}
local first = 1
for g = 0, groups - 1 do
  local count = tonumber(ARGV[4 + 2 * g])
  local need = tonumber(ARGV[5 + 2 * g])
  local last = first + count - 1
  local held = 0
  for i = first, last do
    status[i] = -2
    holders[i] = false
    if beyond(i) then
      status[i] = -4
      if redis.call('GET', KEYS[i]) == token then
        redis.call('DEL', KEYS[i])
      end
    elseif redis.call('GET', KEYS[i]) == token then
      redis.call('PEXPIRE', KEYS[i], ttl)
      status[i] = -1
      held = held + 1
    end
  end
  for i = first, last do
    if status[i] == -2 then
      if redis.call('EXISTS', KEYS[i]) == 1 then
        local left = redis.call('PTTL', KEYS[i])
        if left < 0 then
          left = -3
        end
        status[i] = left
        holders[i] = holder_of(redis.call('GET', KEYS[i]))
      elseif held < need then
        redis.call('SET', KEYS[i], token, 'PX', ttl)
        status[i] = -1
        held = held + 1
      end
    end
  end
  first = last + 1
end
for i = 1, n do
  status[n + i] = holders[i]
end
return status
