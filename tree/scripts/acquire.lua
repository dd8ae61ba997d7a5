-- Locks one node of a tree on this server, atomically: refused if the node,
-- one of its ancestors or a live descendant is locked; otherwise the node's
-- lock key is set and the node is registered with every ancestor's index of
-- locked descendants.
--
-- KEYS[1..d]      lock keys of the path's prefixes, root first (KEYS[d] is the node's)
-- KEYS[d+1..2d]   descendant indexes (sets of escaped paths) of the same prefixes
-- KEYS[2d+1]      the tree's owners hash: escaped path -> 'token:owner'
-- ARGV[1]         token
-- ARGV[2]         ttl in milliseconds
-- ARGV[3]         lock key prefix (a lock key is the prefix plus the escaped path)
-- ARGV[4]         'lock', or 'check': report a conflict, lock nothing
-- ARGV[5]         owner id, '' for none
--
-- Returns 1 when locked (for 'check': when nothing conflicts), else
-- {relation, escaped path, remaining ttl in ms (-1: no expiry), owner or '', holder}
-- with relation 'ancestor', 'self' or 'descendant' and the holder's client
-- (holder_of, prepended to granting scripts by quorate-redlock).
--
-- An index entry is live exactly while the descendant's lock key exists, so
-- it expires with the lock's own ttl, a release (deleting the lock key)
-- ends it at once and an extension keeps it: no index upkeep elsewhere.
-- Dead entries are removed whenever a check meets them, and each
-- registration samples a few, so an index cannot grow without bound.

local depth = (#KEYS - 1) / 2
local token, ttl, prefix, mode, owner = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local owners = KEYS[#KEYS]
local SAMPLE = 3

-- The owner entry counts only while it names the current holder's token.
local function owner_of(path, holder)
  local entry = redis.call('HGET', owners, path)
  if holder and entry and string.sub(entry, 1, #holder + 1) == holder .. ':' then
    return string.sub(entry, #holder + 2)
  end
  return ''
end

local function conflict(relation, path, pttl)
  local value = redis.call('GET', prefix .. path)
  return {relation, path, pttl, owner_of(path, value), holder_of(value)}
end

for i = 1, depth do
  local pttl = redis.call('PTTL', KEYS[i])
  if pttl ~= -2 then
    local relation = 'ancestor'
    if i == depth then relation = 'self' end
    return conflict(relation, string.sub(KEYS[i], #prefix + 1), pttl)
  end
end

local index = KEYS[2 * depth]
for _, path in ipairs(redis.call('SMEMBERS', index)) do
  local pttl = redis.call('PTTL', prefix .. path)
  if pttl == -2 then
    redis.call('SREM', index, path)
  else
    return conflict('descendant', path, pttl)
  end
end

if mode == 'check' then
  return 1
end

local node = string.sub(KEYS[depth], #prefix + 1)
redis.call('SET', KEYS[depth], token, 'PX', ttl)
for i = depth + 1, 2 * depth - 1 do
  redis.call('SADD', KEYS[i], node)
  for _, path in ipairs(redis.call('SRANDMEMBER', KEYS[i], SAMPLE)) do
    if redis.call('EXISTS', prefix .. path) == 0 then
      redis.call('SREM', KEYS[i], path)
    end
  end
end

if owner ~= '' then
  redis.call('HSET', owners, node, token .. ':' .. owner)
else
  redis.call('HDEL', owners, node)
end
local sample = redis.call('HRANDFIELD', owners, SAMPLE, 'WITHVALUES')
for j = 1, #sample, 2 do
  local holder = redis.call('GET', prefix .. sample[j])
  if not holder or string.sub(sample[j + 1], 1, #holder + 1) ~= holder .. ':' then
    redis.call('HDEL', owners, sample[j])
  end
end
return 1
