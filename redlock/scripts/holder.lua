-- Who holds a lock key (redlock/src/owner.rs), prepended to every script that can grant so
-- that a refusal names its holder without another request: a token's first 16 hex digits
-- are its client's id, and each client records a description of itself under
-- 'quorate:owner:<id>'. Returns 'id description', or 'id' alone when no description is
-- recorded, or false when the value is not a quorate token (a claim for a queued waiter, an
-- application's own key). Reads a key it was not given: on a Redis Cluster node that key may
-- be on another shard, which refuses it; the holder is then named by its id alone.
local function holder_of(value)
  if not value or #value ~= 32 or not string.match(value, '^%x+$') then
    return false
  end
  local id = string.sub(value, 1, 16)
  local description = redis.pcall('GET', 'quorate:owner:' .. id)
  if type(description) == 'string' then
    return id .. ' ' .. description
  end
  return id
end
