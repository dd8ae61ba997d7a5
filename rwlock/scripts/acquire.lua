-- One read or write acquisition of a read-write lock on this server, atomically (rwlock.rs).
-- Writers are preferred: a writer refused by readers leaves an intent, and new readers are
-- refused while a live intent exists, so a stream of readers cannot starve a writer.
--
-- KEYS[1]   the writer key (the writer's token, with its ttl)
-- KEYS[2]   the readers index: a set of reader ids; reader id holds prefix .. 'r:' .. id
-- KEYS[3]   the intents index: a set of waiting writers; writer m waits while
--           prefix .. 'i:' .. m exists
-- KEYS[4]   'read': this reader's key (prefix .. 'r:' .. id, an id that is not the token);
--           'write': this writer's intent key (prefix .. 'i:' .. member)
-- ARGV[1]   'read' or 'write'
-- ARGV[2]   token
-- ARGV[3]   ttl in milliseconds
-- ARGV[4]   key prefix
-- ARGV[5]   'write': the writer's member (the same for every round of one call)
-- ARGV[6]   'write': how long its intent lives unless renewed, in milliseconds
-- ARGV[7]   'write': '1' for a fenced writer: KEYS[5], the fence counter (no ttl, it only
--           grows), is incremented with the grant
--
-- Returns 1 when granted ({1, counter} for a fenced writer), else
-- {what, key, remaining ttl in ms (-1: no expiry), holder}:
-- what is 'writer' (the writer key is held or claimed), 'reader' (a reader holds key) or
-- 'waiting' (a writer waits: its intent key); holder is holder_of (prepended to granting
-- scripts by quorate-redlock).
--
-- Index entries are live exactly while their key exists: a release (deleting the key), an
-- expiry and an extension need no index upkeep. Dead entries are removed when met.

local w, readers, intents, mine = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local mode, token, ttl, prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local SAMPLE = 3

local function blocked(what, key)
  local value = redis.call('GET', key)
  return {what, string.sub(key, #prefix + 1), redis.call('PTTL', key), holder_of(value)}
end

local function intend()
  if mode == 'write' then
    redis.call('SET', mine, ARGV[5], 'PX', ARGV[6])
    redis.call('SADD', intents, ARGV[5])
  end
end

if redis.call('EXISTS', w) == 1 then
  intend()
  return blocked('writer', w)
end

if mode == 'read' then
  for _, member in ipairs(redis.call('SMEMBERS', intents)) do
    local intent = prefix .. 'i:' .. member
    if redis.call('EXISTS', intent) == 1 then
      return blocked('waiting', intent)
    end
    redis.call('SREM', intents, member)
  end
  redis.call('SET', mine, token, 'PX', ttl)
  redis.call('SADD', readers, string.sub(mine, #prefix + 3))
  for _, other in ipairs(redis.call('SRANDMEMBER', readers, SAMPLE)) do
    if redis.call('EXISTS', prefix .. 'r:' .. other) == 0 then
      redis.call('SREM', readers, other)
    end
  end
  return 1
end

for _, reader in ipairs(redis.call('SMEMBERS', readers)) do
  local key = prefix .. 'r:' .. reader
  if redis.call('EXISTS', key) == 1 then
    intend()
    return blocked('reader', key)
  end
  redis.call('SREM', readers, reader)
end
redis.call('SET', w, token, 'PX', ttl)
redis.call('DEL', mine)
redis.call('SREM', intents, ARGV[5])
if ARGV[7] == '1' then
  return {1, fence_incr(KEYS[5])}
end
return 1
